//! jobs-sqs (placeholder while the workspace is laid down).

//! jobs-client (placeholder while the workspace is laid down).

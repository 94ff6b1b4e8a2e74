//! jobs-scheduler (placeholder while the workspace is laid down).

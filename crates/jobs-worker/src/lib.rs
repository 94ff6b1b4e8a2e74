//! jobs-worker (placeholder while the workspace is laid down).

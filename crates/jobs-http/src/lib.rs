//! jobs-http (placeholder while the workspace is laid down).

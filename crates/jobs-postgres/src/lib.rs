//! jobs-postgres (placeholder while the workspace is laid down).

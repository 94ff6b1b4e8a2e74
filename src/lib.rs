//! async-jobs umbrella (placeholder).

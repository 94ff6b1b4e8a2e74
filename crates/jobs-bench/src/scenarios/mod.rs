//! The scenarios of the benchmark issue, one module each. Every `run` returns the JSON object
//! the binary prints as one line.

pub mod deadline;
pub mod e2e;
pub mod enqueue;
pub mod latency;
pub mod scale;
pub mod sqs_baseline;

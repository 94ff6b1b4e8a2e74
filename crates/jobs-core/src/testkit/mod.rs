//! The testkit (feature `testkit`): conformance suites for adapters and helpers for testing
//! handlers.
//!
//! - [`store`]: the one [`JobStore`](crate::JobStore) conformance suite. An adapter runs all of it
//!   with [`store_conformance_tests!`](crate::store_conformance_tests).
//! - [`transport`]: the one [`Transport`](crate::Transport) suite, run with
//!   [`transport_conformance_tests!`](crate::transport_conformance_tests).
//! - [`helpers`]: run a handler against a job, work every due job inline, assert what was enqueued.
//!
//! A behaviour change extends the shared suite, never one adapter's own tests, so semantics cannot
//! drift between adapters.

pub mod helpers;
pub mod store;
pub mod transport;

pub use helpers::*;

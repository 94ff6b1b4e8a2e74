//! In-memory adapters: a [`MemoryStore`] and a [`MemoryTransport`] with the same semantics as the
//! real ones (leases, fencing, EDF under caps, atomic quotas, visibility timeouts).
//!
//! They are for unit tests of handlers and for the embedded quick start. Nothing survives the
//! process, so they are never the production choice.

mod schedule;
mod store;
mod transport;

pub use store::MemoryStore;
pub use transport::{MemoryTransport, DEFAULT_RECEIVE_BATCH, DEFAULT_VISIBILITY_TIMEOUT};

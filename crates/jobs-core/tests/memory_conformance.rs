//! The shared conformance suites, run against the in-memory adapters.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use jobs_core::memory::{MemoryStore, MemoryTransport};
use jobs_core::{JobStore, ManualClock, Transport};

async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn JobStore> {
    Arc::new(MemoryStore::new(clock))
}

async fn make_transport(use_cases: Vec<String>) -> Arc<dyn Transport> {
    Arc::new(MemoryTransport::new(use_cases))
}

jobs_core::store_conformance_tests!(make_store);
jobs_core::transport_conformance_tests!(make_transport);

//! The HTTP API suite over the in-memory store.

#![allow(clippy::unwrap_used)]

mod suite;

use std::sync::Arc;

use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;

fn memory() -> Arc<dyn jobs_core::JobStore> {
    Arc::new(MemoryStore::new(Arc::new(SystemClock)))
}

api_suite!(memory());

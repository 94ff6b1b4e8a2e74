//! The store conformance suite against a [`RoutedStore`] over in-memory stores, twice:
//!
//! - `hinted`: the default store holds `alpha` and `beta` (the suite's main use cases, which
//!   one of its batches mixes), a second store `gamma`, `delta` and `notifications` (the
//!   schedules' use case), so the merged answers (backlog, counts, lists) span two stores;
//! - `probing`: `alpha` and `beta` live in the *second* store and the routed store remembers no
//!   job, so every call by id (claims, outcomes, cancels, retries) finds its job by probing the
//!   default store first.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use jobs_core::memory::MemoryStore;
use jobs_core::{JobStore, ManualClock, RoutedStore};

async fn make_hinted(clock: Arc<ManualClock>) -> Arc<dyn JobStore> {
    let default: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let other: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock));
    Arc::new(
        RoutedStore::new(default.clone())
            .with_route("alpha", default)
            .with_route("gamma", other.clone())
            .with_route("delta", other.clone())
            .with_route("notifications", other),
    )
}

async fn make_probing(clock: Arc<ManualClock>) -> Arc<dyn JobStore> {
    let default: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let other: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock));
    Arc::new(
        RoutedStore::new(default)
            .with_route("alpha", other.clone())
            .with_route("beta", other)
            .with_hint_capacity(0),
    )
}

mod hinted {
    jobs_core::store_conformance_tests!(crate::make_hinted);
}

mod probing {
    jobs_core::store_conformance_tests!(crate::make_probing);
}

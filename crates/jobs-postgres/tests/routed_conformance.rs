//! The shared `JobStore` conformance suite of jobs-core against a `RoutedStore` over two
//! `PgStore`s (two fresh schemas, as two databases would be): the suite's main use cases
//! (`alpha`, `beta`) live in the second store, every other one in the default store, and the
//! routed store remembers no job id, so calls by id probe real fenced statements and wake-ups
//! come from two LISTEN connections.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use jobs_core::{JobStore, ManualClock};
use jobs_postgres::PgRoutes;

async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn JobStore> {
    let default = common::TestDb::new().await.with_clock(clock.clone());
    let other = common::TestDb::new().await.with_clock(clock);
    let routed = PgRoutes::new(default)
        .with_route("alpha", other.clone())
        .with_route("beta", other)
        .routed_store()
        .with_hint_capacity(0);
    Arc::new(routed)
}

jobs_core::store_conformance_tests!(make_store);

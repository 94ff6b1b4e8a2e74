//! The shared `JobStore` conformance suite of jobs-core, run against `PgStore`: each case gets a
//! fresh, migrated schema and a store that reads time from the case's manual clock.
//!
//! The schemas outlive the cases (the suite owns the store); the test helper drops test schemas
//! older than an hour at the start of every test.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use jobs_core::{JobStore, ManualClock};

async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn JobStore> {
    let db = common::TestDb::new().await;
    Arc::new(db.with_clock(clock))
}

jobs_core::store_conformance_tests!(make_store);

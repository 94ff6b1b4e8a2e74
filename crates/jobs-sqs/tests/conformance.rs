//! The shared Transport conformance suite, against SQS (moto: `eval "$(scripts/moto.sh start)"`).

mod common;

use std::sync::Arc;

use jobs_core::Transport;

async fn make_transport(use_cases: Vec<String>) -> Arc<dyn Transport> {
    let names: Vec<&str> = use_cases.iter().map(String::as_str).collect();
    Arc::new(common::fresh(&names).await)
}

jobs_core::transport_conformance_tests!(make_transport);

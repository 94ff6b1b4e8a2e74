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

/// Fails every call of the wrapped store while `down` is set.
#[derive(Debug, Default)]
struct Outage {
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl jobs_core::intercept::Interceptor for Outage {
    async fn before(
        &self,
        _op: jobs_core::intercept::StoreOp,
        _entries: usize,
    ) -> Result<(), jobs_core::StoreError> {
        match self.down.load(std::sync::atomic::Ordering::SeqCst) {
            true => Err(jobs_core::StoreError::Unavailable("injected outage".into())),
            false => Ok(()),
        }
    }
}

/// With use cases in stores of their own, readiness is the default store's; each store's
/// status is in the body.
#[tokio::test]
async fn readiness_is_the_default_stores_and_reports_each_store() {
    use jobs_core::intercept::InterceptedStore;
    use std::sync::atomic::Ordering::SeqCst;
    let outage = |store: Arc<dyn jobs_core::JobStore>| {
        Arc::new(InterceptedStore::new(store, Outage::default()))
    };
    let default = outage(memory());
    let own = outage(memory());
    let routed = jobs_core::RoutedStore::new(default.clone())
        .with_route("notifications", own.clone() as Arc<dyn jobs_core::JobStore>);
    let api = suite::api(Arc::new(routed), jobs_http::AuthConfig::open());
    let r = api.get("/readyz").await;
    assert_eq!(r.status, axum::http::StatusCode::OK, "{r:?}");
    assert_eq!(r.json["stores"][1]["status"], "ready", "{r:?}");
    own.interceptor().down.store(true, SeqCst);
    let r = api.get("/readyz").await;
    assert_eq!(r.status, axum::http::StatusCode::OK, "{r:?}");
    assert_eq!(
        (
            &r.json["status"],
            &r.json["stores"][0]["status"],
            &r.json["stores"][1]["store"],
            &r.json["stores"][1]["status"]
        ),
        (
            &serde_json::json!("ready"),
            &serde_json::json!("ready"),
            &serde_json::json!("the store of use case 'notifications'"),
            &serde_json::json!("unavailable")
        ),
        "{r:?}"
    );
    default.interceptor().down.store(true, SeqCst);
    let r = api.get("/readyz").await;
    assert_eq!(
        (r.status, r.code()),
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable"
        ),
        "{r:?}"
    );
}

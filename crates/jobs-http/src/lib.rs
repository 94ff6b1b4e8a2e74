//! # jobs-http — the async-jobs HTTP API as an axum router
//!
//! [`router`] serves the job API over a [`jobs_core::JobService`]; mount it at the root of a
//! standalone server (`async-jobs api`) or under a prefix in your own service with
//! [`axum::Router::nest`]. The router only maps: validation, quotas, tenant scope and state
//! transitions are all decided by `jobs-core`.
//!
//! | route | does |
//! |---|---|
//! | `POST /jobs` (alias `POST /jobs/enqueue`) | enqueue one job: 201, or 200 on an idempotent replay |
//! | `POST /jobs/batch` | enqueue `{"jobs": [...]}` all or none |
//! | `GET /jobs/{id}` | one job |
//! | `GET /jobs` | filtered, keyset-paginated list; payloads only with `include_payload=true`, pages bounded in bytes and in jobs examined ([`HttpSettings`]) |
//! | `POST /jobs/{id}/cancel`, `POST /jobs/{id}/retry` | change a job |
//! | `POST /jobs/bulk/retry`, `POST /jobs/bulk/cancel` | change every job a filter matches, in bounded batches ([`bulk`]) |
//! | `GET /pauses`, `PUT`/`DELETE /pauses/{use_case}`, `PUT`/`DELETE /pauses/{use_case}/tenants/{tenant_id}` | pause and resume a use case or one tenant in it ([`pauses`]) |
//! | `GET`/`POST /schedules`, `GET`/`PUT`/`DELETE /schedules/{name}` | cron schedules: periodic jobs, one per slot, with their next run time ([`schedules`]) |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /openapi.json` | operations (no auth) |
//! | `/ui/…` | the web dashboard: HTML pages behind a login with the same credentials ([`ui`]; not part of the OpenAPI document) |
//!
//! Errors are JSON `{"error": {"code", "message"}}` with stable codes ([`error::codes`] and
//! [`jobs_core::ValidationError::code`]); see `docs/http-api.md` for the full table.
//!
//! ```
//! use std::sync::Arc;
//! use jobs_core::{clock::SystemClock, memory::MemoryStore, JobService, PlatformConfig};
//! use jobs_http::{AppState, AuthConfig};
//!
//! let store = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
//! let service = JobService::new(store, Arc::new(PlatformConfig::default()));
//! let api = jobs_http::router(AppState::new(service, AuthConfig::operator_token("s3cret")));
//! let app: axum::Router = axum::Router::new().nest("/async-jobs", api);
//! # let _ = app;
//! ```

pub mod auth;
pub mod bulk;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
mod openapi;
pub mod pauses;
pub mod rate_limits;
mod routes;
pub mod schedules;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod ui;

pub use auth::{AuthConfig, Caller};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use extract::JobList;
pub use limits::ServerLimits;
pub use routes::{openapi, openapi_for, ops_router, router, IDEMPOTENCY_KEY_HEADER};
pub use state::{AppState, HttpSettings};
pub use telemetry::{TRACEPARENT_HEADER, TRACESTATE_HEADER};

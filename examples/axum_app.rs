//! Your own axum service with async-jobs inside it: the job API mounted under `/async-jobs`, and a
//! `POST /signup` route that creates a user and enqueues its welcome email **in the same Postgres
//! transaction** — the job exists if and only if the signup commits.
//!
//! ```sh
//! export ASYNC_JOBS_ENQUEUE_AUTH_TOKEN=change-me   # the mounted job API requires credentials
//! ASYNC_JOBS_DB_DSN=postgres://postgres@127.0.0.1:5432/async_jobs_test \
//!   cargo run --example axum_app            # listens on 127.0.0.1:3000 (EXAMPLE_ADDR to change)
//!
//! curl -s -X POST localhost:3000/signup -H 'content-type: application/json' \
//!   -d '{"tenant_id": "acme", "email": "ada@example.com"}'
//! # {"user_id":1,"job_id":"0193…","job_status":"pending"}
//!
//! # A signup that fails after the enqueue rolls back, and takes its job with it:
//! curl -s -X POST localhost:3000/signup -H 'content-type: application/json' \
//!   -d '{"tenant_id": "acme", "email": "bob@example.com", "fail_after_enqueue": true}'
//!
//! curl -s -H "authorization: Bearer $ASYNC_JOBS_ENQUEUE_AUTH_TOKEN" \
//!   'localhost:3000/async-jobs/jobs?tenant_id=acme&type=send_email'   # only Ada's job
//! ```
//!
//! The jobs wait as `pending` until a scheduler and a worker run against the same database
//! (`async-jobs scheduler`, `async-jobs worker`, or `deploy/docker-compose.yml`). The platform
//! settings (use cases, quotas, credentials for the mounted API) come from the same environment
//! variables as the binaries; `ASYNC_JOBS_DB_SCHEMA` picks the jobs' schema. Like `async-jobs api`,
//! the service refuses to start without `ASYNC_JOBS_ENQUEUE_AUTH_TOKEN` or `ASYNC_JOBS_API_KEYS`
//! unless `ASYNC_JOBS_AUTH=none` says the job API may run open (`/signup` is this example's own
//! route and not protected).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use jobs_core::{EnqueueError, EnqueueRequest, JobService, PlatformConfig};
use jobs_http::auth::{ResolvedAuth, Serving};
use jobs_http::AppState;
use jobs_postgres::PgStore;
use serde::Deserialize;
use serde_json::json;

/// The application's own table, next to the jobs' schema.
const CREATE_USERS: &str = "CREATE TABLE IF NOT EXISTS example_users (
    id BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// What the signup handler shares.
#[derive(Clone)]
struct App {
    store: PgStore,
    config: Arc<PlatformConfig>,
}

#[derive(Debug, Deserialize)]
struct Signup {
    tenant_id: String,
    email: String,
    /// Simulates a failure later in the same transaction (to show the rollback).
    #[serde(default)]
    fail_after_enqueue: bool,
}

/// An error answer: status and a JSON body shaped like the job API's errors.
struct Failure(StatusCode, &'static str, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let Failure(status, code, message) = self;
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// `POST /signup`: insert the user and enqueue `send_email` in one transaction.
async fn signup(State(app): State<App>, Json(req): Json<Signup>) -> Result<Response, Failure> {
    let mut conn = app.store.pool().get().await.map_err(internal)?;
    let tx = conn.transaction().await.map_err(internal)?;

    let row = tx
        .query_opt(
            "INSERT INTO example_users (tenant_id, email) VALUES ($1, $2)
             ON CONFLICT (email) DO NOTHING RETURNING id",
            &[&req.tenant_id, &req.email],
        )
        .await
        .map_err(internal)?;
    let Some(row) = row else {
        // Dropping `tx` rolls back: nothing was written.
        return Err(Failure(
            StatusCode::CONFLICT,
            "email_taken",
            format!("{} already signed up", req.email),
        ));
    };
    let user_id: i64 = row.get(0);

    // Validate exactly as the API would (use case, sizes, defaults, the tenant's quota) ...
    let request = EnqueueRequest::new(
        &req.tenant_id,
        "notifications",
        "send_email",
        json!({
            "to": req.email,
            "subject": "Welcome!",
            "body": format!("Hello, user #{user_id}."),
        }),
    )
    .idempotency_key(format!("welcome-email:{user_id}"));
    let job = jobs_core::enqueue::validate(request, &app.config, chrono::Utc::now())
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    // ... and insert the job with the caller's transaction.
    let enqueued = match app.store.enqueue_in(&tx, job).await {
        Ok(enqueued) => enqueued,
        Err(e @ EnqueueError::QuotaExceeded { .. }) => {
            return Err(Failure(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                e.to_string(),
            ))
        }
        Err(e) => return Err(internal(e)),
    };

    if req.fail_after_enqueue {
        // Anything failing before the commit — here on purpose — drops `tx`: the user row AND
        // the job are rolled back together.
        return Err(internal("simulated failure after the enqueue; rolled back"));
    }
    tx.commit().await.map_err(internal)?;

    let body = json!({
        "user_id": user_id,
        "job_id": enqueued.job.id,
        "job_status": enqueued.job.status,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs, plus spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let _tracing = async_jobs::app::telemetry::init(
        &async_jobs::app::settings::TelemetrySettings::from_env("axum-app-example")?,
    )?;
    let dsn = std::env::var("ASYNC_JOBS_DB_DSN").map_err(|_| {
        "ASYNC_JOBS_DB_DSN must be set, e.g. postgres://postgres@127.0.0.1:5432/async_jobs_test"
    })?;
    let schema = std::env::var("ASYNC_JOBS_DB_SCHEMA")
        .unwrap_or_else(|_| jobs_postgres::DEFAULT_SCHEMA.to_owned());
    let addr: SocketAddr = std::env::var("EXAMPLE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;

    let config = Arc::new(PlatformConfig::from_env()?);
    // Credentials resolved like `async-jobs api` does: none configured is refused, not open.
    let auth = ResolvedAuth::from_env(Serving::Api { addr })?;
    auth.log();
    // TLS as the platform's processes: `sslmode` in the DSN, ASYNC_JOBS_DB_CA_FILE for the CA.
    let connector = jobs_postgres::PgConnector::from_env_ca(&dsn)?;
    let store = PgStore::connect_using(&connector, &schema, jobs_postgres::PoolOptions::default())?;
    store.migrate().await?;
    store
        .pool()
        .get()
        .await?
        .batch_execute(CREATE_USERS)
        .await?;

    // The job API, over the same store, mounted under a prefix of this service.
    let service = JobService::new(Arc::new(store.clone()), config.clone());
    let jobs_api = jobs_http::router(AppState::new(service, auth.into_config()));

    let app = Router::new()
        .route("/signup", post(signup))
        .with_state(App { store, config })
        .nest("/async-jobs", jobs_api);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr} (job API under /async-jobs)");
    jobs_http::server::serve(listener, app, async_jobs::app::shutdown_signal()).await?;
    Ok(())
}

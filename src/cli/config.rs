//! `--print-config`: what a command would run with, secrets redacted.

use std::net::SocketAddr;

use jobs_core::PlatformConfig;
use jobs_http::app::{StoreKind, StoreRole};
use jobs_http::auth::{ResolvedAuth, Serving};
use serde_json::json;

use super::CliError;

/// `ASYNC_JOBS_DB_SCHEMA`, default `async_jobs`.
pub(crate) fn schema() -> String {
    var("ASYNC_JOBS_DB_SCHEMA").unwrap_or_else(|| jobs_postgres::DEFAULT_SCHEMA.to_owned())
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The role of the store `command` runs on (its statement timeout), if it has one.
fn store_role(command: &str) -> Option<StoreRole> {
    match command {
        "dev" => Some(StoreRole::Dev),
        "api" => Some(StoreRole::Api),
        "scheduler" | "worker" => Some(StoreRole::Background),
        _ => None,
    }
}

/// The resolved configuration of `command` (listening on `api_addr` when it serves the API) as
/// pretty JSON. Fails like the command would on a bad setting, missing credentials included.
pub(crate) fn describe(command: &str, api_addr: Option<SocketAddr>) -> Result<String, CliError> {
    let platform = PlatformConfig::from_env()?;
    // The same resolution the API processes run: the authentication actually in force.
    let auth = match (command, api_addr) {
        ("dev", Some(addr)) => Some(ResolvedAuth::from_env(Serving::Dev { addr })?),
        (_, Some(addr)) => Some(ResolvedAuth::from_env(Serving::Api { addr })?),
        (_, None) => None,
    };
    let use_cases: Vec<_> = platform
        .use_cases
        .values()
        .map(|uc| {
            json!({
                "name": uc.name,
                "queue_url": uc.queue_url,
                "max_concurrent": uc.max_concurrent,
                "default_delay_tolerance_seconds": uc.default_delay_tolerance.as_secs_f64(),
            })
        })
        .collect();
    // The store the command would run on (it fails the same way without one).
    let store = match store_role(command) {
        Some(role) => Some(StoreKind::from_env(role)?),
        None => var("ASYNC_JOBS_DB_DSN").map(|dsn| StoreKind::Postgres {
            dsn,
            schema: schema(),
            ca_file: var(jobs_http::app::CA_FILE_VAR).map(Into::into),
        }),
    };
    let store = match store {
        Some(StoreKind::Postgres {
            dsn,
            schema,
            ca_file,
        }) => {
            // The TLS settings the command would connect with (fails the same way on bad ones).
            let connector = jobs_postgres::PgConnector::new(&dsn, ca_file.as_deref())?;
            Some(json!({
                "kind": "postgres",
                "dsn": jobs_postgres::tls::redact_dsn(&dsn),
                "schema": schema,
                "ca_file": ca_file.map(|p| p.display().to_string()),
                "sslmode": connector.ssl_mode().as_str(),
                "tls_roots": connector.roots().map(ToString::to_string),
            }))
        }
        Some(StoreKind::Memory) => Some(json!({"kind": "memory", "durable": false})),
        None => None,
    };
    let mut out = json!({
        "command": command,
        "store": store,
        "use_cases": use_cases,
        "per_tenant_quotas": var("ASYNC_JOBS_PER_TENANT_QUOTAS"),
        "log_format": var("ASYNC_JOBS_LOG_FORMAT").unwrap_or_else(|| "text".to_owned()),
        // Span export (the standard OpenTelemetry variables; headers are not shown).
        "traces": {
            "otlp_export": jobs_http::telemetry::otlp_configured(),
            "endpoint": var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT")),
            "service_name": var("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| format!("async-jobs-{command}")),
        },
        "aws": {
            "region": var("AWS_REGION"),
            "endpoint_url_sqs": var("AWS_ENDPOINT_URL_SQS"),
        },
    });
    if let Some(obj) = out.as_object_mut() {
        if let (Some(addr), Some(auth)) = (api_addr, &auth) {
            obj.insert("api_addr".into(), json!(addr.to_string()));
            obj.insert("auth".into(), auth.report());
            let limits = jobs_http::ServerLimits::from_env()?;
            obj.insert(
                "http_limits".into(),
                json!({
                    "header_timeout_seconds": limits.header_timeout.as_secs_f64(),
                    "body_timeout_seconds": limits.body_timeout.as_secs_f64(),
                    "idle_timeout_seconds": limits.idle_timeout.as_secs_f64(),
                    "max_connections": limits.max_connections,
                    "shutdown_grace_seconds": limits.shutdown_grace.as_secs_f64(),
                }),
            );
        }
        if matches!(command, "dev" | "scheduler") {
            obj.insert(
                "scheduler".into(),
                json!(format!(
                    "{:?}",
                    jobs_scheduler::SchedulerConfig::from_env()?
                )),
            );
        }
        if matches!(command, "dev" | "worker") {
            obj.insert(
                "worker".into(),
                json!(format!("{:?}", jobs_worker::WorkerConfig::from_env()?)),
            );
        }
        if let Some(role) = store_role(command) {
            obj.insert(
                "statement_timeout_seconds".into(),
                json!(role.statement_timeout_from_env()?.map(|t| t.as_secs_f64())),
            );
        }
        if matches!(command, "scheduler" | "worker") {
            obj.insert(
                "health_addr".into(),
                json!(jobs_http::server::ops_addr_from_env()?.map(|a| a.to_string())),
            );
        }
    }
    Ok(serde_json::to_string_pretty(&out)?)
}

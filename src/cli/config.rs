//! `--print-config`: what a command would run with, secrets redacted.

use jobs_core::PlatformConfig;
use jobs_http::app::StoreRole;
use serde_json::json;

use super::CliError;

/// Hides the password of a connection string (URL or key=value form).
pub(crate) fn redact_dsn(dsn: &str) -> String {
    if let Some((scheme, rest)) = dsn.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            return format!("{scheme}://{masked}@{host}");
        }
        return dsn.to_owned();
    }
    dsn.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

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
        "dev" | "api" => Some(StoreRole::Api),
        "scheduler" | "worker" => Some(StoreRole::Background),
        _ => None,
    }
}

/// The resolved configuration of `command` as pretty JSON. Fails like the command would on a
/// bad setting.
pub(crate) fn describe(command: &str) -> Result<String, CliError> {
    let platform = PlatformConfig::from_env()?;
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
    let mut out = json!({
        "command": command,
        "store": match var("ASYNC_JOBS_DB_DSN") {
            Some(dsn) => json!({"kind": "postgres", "dsn": redact_dsn(&dsn), "schema": schema()}),
            None => json!({"kind": "memory", "durable": false}),
        },
        "use_cases": use_cases,
        "per_tenant_quotas": var("ASYNC_JOBS_PER_TENANT_QUOTAS"),
        "auth": {
            "bearer_token": if var("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN").is_some() { "set (redacted)" } else { "unset" },
            "tenant_api_keys": if var("ASYNC_JOBS_API_KEYS").is_some() { "set (hashes, redacted)" } else { "unset" },
        },
        "log_format": var("ASYNC_JOBS_LOG_FORMAT").unwrap_or_else(|| "text".to_owned()),
        "aws": {
            "region": var("AWS_REGION"),
            "endpoint_url_sqs": var("AWS_ENDPOINT_URL_SQS"),
        },
    });
    if let Some(obj) = out.as_object_mut() {
        if matches!(command, "dev" | "api") {
            obj.insert(
                "api_addr".into(),
                json!(var("ASYNC_JOBS_API_ADDR").unwrap_or_else(|| "127.0.0.1:8080".to_owned())),
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

#[cfg(test)]
mod tests {
    use super::redact_dsn;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact_dsn("postgres://app:s3cret@db:5432/jobs"),
            "postgres://app:***@db:5432/jobs"
        );
        assert_eq!(
            redact_dsn("postgres://app@db/jobs"),
            "postgres://app@db/jobs"
        );
        assert_eq!(
            redact_dsn("host=db user=app password=s3cret"),
            "host=db user=app password=***"
        );
    }
}

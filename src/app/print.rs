//! `--print-config`: the [`Settings`] a process runs with, as JSON, secrets redacted.

use std::time::Duration;

use serde_json::{json, Value};

use super::settings::{redact_url, LogFormat, Settings, StoreSettings, TransportSettings};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Settings {
    /// Everything this value holds, as JSON: what `--print-config` prints and the process runs
    /// with. Passwords in connection strings are `***`; credentials show only whether they are
    /// set and how many (never their values).
    pub fn report(&self) -> Value {
        let use_cases: Vec<_> = self
            .platform
            .use_cases
            .values()
            .map(|uc| {
                json!({
                    "name": uc.name,
                    "queue_url": uc.queue_url.as_deref().map(redact_url),
                    "max_concurrent": uc.max_concurrent,
                    "default_delay_tolerance_seconds": secs(uc.default_delay_tolerance),
                    "expire_at_deadline": uc.expire_at_deadline,
                    "fair_share": uc.fair_share,
                })
            })
            .collect();
        let store = match &self.store {
            StoreSettings::Memory => json!({"kind": "memory", "durable": false}),
            StoreSettings::Postgres(pg) => json!({
                "kind": "postgres",
                "dsn": pg.redacted_dsn(),
                "schema": pg.schema,
                "ca_file": pg.ca_file.as_ref().map(|p| p.display().to_string()),
                "sslmode": pg.connector.ssl_mode().as_str(),
                "tls_roots": pg.connector.roots().map(ToString::to_string),
                "statement_timeout_seconds": pg.statement_timeout.map(secs),
                "auto_migrate": pg.auto_migrate,
                // ASYNC_JOBS_<USE_CASE>_DB_DSN: the use cases kept in a store of their own.
                "use_case_stores": pg
                    .use_case_stores
                    .iter()
                    .map(|(uc, own)| {
                        (
                            uc.clone(),
                            json!({
                                "variable": own.variable,
                                "dsn": own.redacted_dsn(),
                                "sslmode": own.connector.ssl_mode().as_str(),
                            }),
                        )
                    })
                    .collect::<serde_json::Map<String, Value>>(),
                "stores": pg.targets().len(),
            }),
        };
        let transport = match &self.transport {
            TransportSettings::None => Value::Null,
            TransportSettings::InProcess => json!({"kind": "in-process"}),
            TransportSettings::Sqs {
                queue_urls,
                options,
                region,
                endpoint_url,
            } => json!({
                "kind": "sqs",
                "queue_urls": queue_urls
                    .iter()
                    .map(|(uc, url)| (uc.clone(), redact_url(url)))
                    .collect::<std::collections::BTreeMap<_, _>>(),
                "region": region,
                "endpoint_url": endpoint_url.as_deref().map(redact_url),
                "connect_timeout_seconds": secs(options.connect_timeout),
                "request_timeout_seconds": secs(options.request_timeout),
                "max_attempts": options.max_attempts,
                "max_message_bytes": options.max_message_bytes,
            }),
        };
        let limits = &self.platform.limits;
        let mut out = json!({
            "command": self.process.name(),
            "store": store,
            "transport": transport,
            "use_cases": use_cases,
            "per_tenant_quotas": self.platform.quotas.to_json(),
            "per_tenant_rate_limits": self.platform.rate_limits.to_json(),
            "per_tenant_weights": self.platform.weights.to_json(),
            "input_limits": {
                "max_payload_bytes": limits.max_payload_bytes,
                "max_tenant_len": limits.max_tenant_len,
                "max_kind_len": limits.max_kind_len,
                "max_idempotency_key_len": limits.max_idempotency_key_len,
                "max_schedule_ahead_seconds": secs(limits.max_schedule_ahead),
                "max_attempts": limits.max_attempts,
                "max_delay_tolerance_seconds": secs(limits.max_delay_tolerance),
                "max_timeout_seconds": secs(limits.max_timeout),
                "default_max_attempts": limits.default_max_attempts,
                "default_timeout_seconds": secs(limits.default_timeout),
                "max_batch": limits.max_batch,
            },
            "log_format": match self.telemetry.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
            "log_filter": self.telemetry.log_filter,
            // Span export (the standard OpenTelemetry variables; headers are not shown).
            "traces": {
                "otlp_export": self.telemetry.traces.is_some(),
                "endpoint": self.telemetry.configured_endpoint.as_deref().map(redact_url),
                "traces_url": self.telemetry.traces.as_ref().map(|t| redact_url(&t.traces_url)),
                "service_name": self.telemetry.service_name,
            },
        });
        let Some(obj) = out.as_object_mut() else {
            return out;
        };
        if let Some(api) = &self.api {
            obj.insert("api_addr".into(), json!(api.addr.to_string()));
            obj.insert("auth".into(), api.auth.report());
            obj.insert(
                "ui_session_key".into(),
                json!(match api.ui_session_key {
                    Some(_) => "configured (***)",
                    None => "random per process",
                }),
            );
            obj.insert(
                "http_limits".into(),
                json!({
                    "header_timeout_seconds": secs(api.limits.header_timeout),
                    "body_timeout_seconds": secs(api.limits.body_timeout),
                    "idle_timeout_seconds": secs(api.limits.idle_timeout),
                    "max_connections": api.limits.max_connections,
                    "shutdown_grace_seconds": secs(api.limits.shutdown_grace),
                }),
            );
        }
        if let Some(s) = &self.scheduler {
            obj.insert(
                "scheduler".into(),
                json!({
                    "tick_interval_seconds": secs(s.tick_interval),
                    "dispatch_lease_seconds": secs(s.dispatch_lease),
                    "dispatch_batch": s.dispatch_batch,
                    "reap_batch": s.reap_batch,
                    "retention_seconds": secs(s.retention),
                    "prune_interval_seconds": secs(s.prune_interval),
                    "prune_batch": s.prune_batch,
                    "leader_poll_seconds": secs(s.leader_poll),
                    "min_backoff_seconds": secs(s.min_backoff),
                    "max_backoff_seconds": secs(s.max_backoff),
                }),
            );
        }
        if let Some(b) = &self.backlog {
            obj.insert(
                "backlog".into(),
                json!({
                    "interval_seconds": secs(b.interval),
                    "rate_window_seconds": secs(b.rate_window),
                    "scaling_min_rate": b.min_rate,
                    "tenant_labels": b.tenant_labels.labels.describe(),
                    "tenant_labels_max": b.tenant_labels.max_tenants,
                }),
            );
        }
        if let Some(schedules) = &self.schedules {
            // The configured cron schedules (names, expressions, zones, tenants and use cases;
            // payloads are not shown).
            let list: Vec<Value> = schedules
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "cron": s.cron,
                        "timezone": s.timezone,
                        "tenant_id": s.template.tenant_id,
                        "use_case": s.template.use_case,
                        "type": s.template.kind,
                        "missed": s.missed,
                    })
                })
                .collect();
            obj.insert("schedules".into(), Value::Array(list));
        }
        if let Some(w) = &self.worker {
            obj.insert(
                "worker".into(),
                json!({
                    "use_cases": w.use_cases,
                    "concurrency": w.concurrency,
                    "receive_wait_seconds": secs(w.receive_wait),
                    "heartbeat_lease_seconds": secs(w.heartbeat_lease),
                    "lease_margin_seconds": secs(w.lease_margin),
                    "shutdown_grace_seconds": secs(w.shutdown_grace),
                    "error_backoff_seconds": secs(w.error_backoff),
                    "receive_loops": w.receive_loops,
                    "tenant_labels": w.tenant_labels.labels.describe(),
                    "tenant_labels_max": w.tenant_labels.max_tenants,
                }),
            );
            obj.insert(
                "sample_side_effects".into(),
                match &self.side_effects {
                    Some(se) => json!({
                        "dsn": jobs_postgres::tls::redact_dsn(&se.dsn),
                        "schema": se.schema,
                    }),
                    None => Value::Null,
                },
            );
        }
        if matches!(
            self.process,
            super::Process::Scheduler | super::Process::Worker
        ) {
            obj.insert(
                "health_addr".into(),
                json!(self.health_addr.map(|a| a.to_string())),
            );
        }
        out
    }
}

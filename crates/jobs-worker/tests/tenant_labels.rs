//! The per-tenant deadline metrics under the tenant label policy: each job counted once (at its
//! first start), tenants past the cap as `tenant="other"`, and the per-use-case series unchanged.
//! One test in this binary: it owns the process's Prometheus recorder.

mod common;

use std::time::Duration;

use common::*;
use jobs_core::{EnqueueRequest, JobStatus, TenantLabelPolicy, TenantLabels};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

/// The value of the series `name{labels}` in `text` (0 when absent).
fn value(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

fn sms(tenant: &str, extra: serde_json::Value) -> EnqueueRequest {
    let mut payload = json!({"to": "+1555", "text": "x"});
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    EnqueueRequest::new(tenant, NOTIFICATIONS, "send_sms", payload)
        .backoff(one_second_backoff())
        .delay_tolerance(Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_series_count_each_job_once_and_overflow_to_other() {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let config = worker_config().with_tenant_labels(TenantLabelPolicy {
        labels: TenantLabels::All,
        max_tenants: 2,
    });
    let mut h = Harness::start(registry(), config);

    // t1: one job that fails once and succeeds on its second start; t2: one on time. They take
    // the two labels.
    let retried = h.enqueue_req(sms("t1", json!({"fail_times": 1}))).await;
    let on_time = h.enqueue_req(sms("t2", json!({}))).await;
    h.dispatch().await;
    h.wait_job(retried.id, "first attempt failed", |j| {
        j.attempts == 1 && j.status == JobStatus::Pending
    })
    .await;
    h.wait_status(on_time.id, JobStatus::Succeeded).await;
    h.clock.advance(Duration::from_secs(1));
    h.dispatch().await;
    h.wait_status(retried.id, JobStatus::Succeeded).await;

    // t3 and t4, past the cap: one on time, two that start 3 s after their deadline.
    let mut later = vec![h.enqueue_req(sms("t3", json!({}))).await];
    h.dispatch().await;
    h.wait_status(later[0].id, JobStatus::Succeeded).await;
    later.push(h.enqueue_req(sms("t3", json!({}))).await);
    later.push(h.enqueue_req(sms("t4", json!({}))).await);
    h.clock.advance(Duration::from_secs(5));
    h.dispatch().await;
    for job in &later {
        h.wait_status(job.id, JobStatus::Succeeded).await;
    }
    h.wait_drained().await;
    let report = h.shutdown().await;
    assert_eq!(report.claimed, 6, "five jobs, one started twice");
    assert_eq!((report.deadlines_met, report.deadlines_missed), (3, 2));

    let text = prometheus.render();
    let tenant = |t: &str| format!("use_case=\"{NOTIFICATIONS}\",tenant=\"{t}\"");
    let met = |t: &str| value(&text, "async_jobs_tenant_deadlines_met_total", &tenant(t));
    let missed = |t: &str| value(&text, "async_jobs_tenant_deadline_misses_total", &tenant(t));
    assert_eq!(
        (met("t1"), missed("t1")),
        (1.0, 0.0),
        "counted once, at the first start"
    );
    assert_eq!((met("t2"), missed("t2")), (1.0, 0.0));
    assert_eq!(
        (met("other"), missed("other")),
        (1.0, 2.0),
        "t3 and t4 are past the cap"
    );
    for t in ["t3", "t4"] {
        assert!(!text.contains(&tenant(t)), "no series for {t}:\n{text}");
    }
    // The per-use-case series are the same totals, without a tenant label.
    let use_case = format!("use_case=\"{NOTIFICATIONS}\"");
    assert_eq!(
        value(&text, "async_jobs_deadlines_met_total", &use_case),
        3.0
    );
    assert_eq!(
        value(&text, "async_jobs_deadline_misses_total", &use_case),
        2.0
    );
    // Lateness per tenant: the two late starts, 3 s each.
    assert_eq!(
        value(
            &text,
            "async_jobs_tenant_deadline_lateness_seconds_count",
            &tenant("other")
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "async_jobs_tenant_deadline_lateness_seconds_sum",
            &tenant("other")
        ),
        6.0
    );
}

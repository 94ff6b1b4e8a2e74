//! SLO telemetry over real HTTP: `async-jobs dev` (in-memory store, sample handlers) with a cap of
//! one notification at a time, so a backlog builds behind a long job; `/metrics` shows the
//! backlog, the oldest due job's age, the scaling signal and the per-tenant series under the
//! label policy (docs/metrics.md).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{metric_sum, Proc};
use serde_json::{json, Value};

/// The value of the one series `name{labels}` in `text`, if present.
fn series(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

async fn enqueue(client: &reqwest::Client, base: &str, tenant: &str) -> Value {
    let response = client
        .post(format!("{base}/jobs"))
        .json(&json!({
            "tenant_id": tenant,
            "use_case": "notifications",
            "type": "send_sms",
            "payload": {"to": "+1555", "text": "x", "sleep_ms": 120_000},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_backlog_its_age_and_the_scaling_signal() {
    let port = common::free_port();
    let child = Command::new(common::binary("async-jobs"))
        .arg("dev")
        .env_clear()
        .env("ASYNC_JOBS_API_ADDR", format!("127.0.0.1:{port}"))
        .env("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "1")
        .env("ASYNC_JOBS_METRICS_TENANT_LABELS", "acme")
        // A floor far above the real drain rate: the signal is exactly backlog / 1000.
        .env("ASYNC_JOBS_SCALING_MIN_RATE", "1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _dev = Proc {
        name: "dev".into(),
        child,
    };
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dev did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::new();

    // One long job takes the only place; five more wait behind it: three of acme's, two of
    // globex's (not in the label list: tenant="other").
    let first = enqueue(&client, &base, "acme").await;
    let id = first["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job: Value = client
            .get(format!("{base}/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first job did not start: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for tenant in ["acme", "acme", "acme", "globex", "globex"] {
        enqueue(&client, &base, tenant).await;
    }

    // The leader reads the backlog every 10 s: wait for a reading that has all five.
    let uc = "use_case=\"notifications\"";
    let deadline = Instant::now() + Duration::from_secs(40);
    let text = loop {
        let text = common::http_get(port, "/metrics").await;
        if series(&text, "async_jobs_backlog_jobs", uc) == Some(5.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "no backlog of 5 in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let age = series(&text, "async_jobs_oldest_pending_age_seconds", uc).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(series(&text, "async_jobs_backlog_seconds", uc), Some(0.005));
    let rate = series(&text, "async_jobs_dispatch_rate", uc).unwrap();
    assert!((0.0..1000.0).contains(&rate), "{rate}");
    let idle = "use_case=\"message_labeling\"";
    assert_eq!(series(&text, "async_jobs_backlog_jobs", idle), Some(0.0));
    assert_eq!(series(&text, "async_jobs_backlog_seconds", idle), Some(0.0));
    assert_eq!(
        series(&text, "async_jobs_oldest_pending_age_seconds", idle),
        Some(0.0)
    );

    // Per tenant, under the policy: acme by name, globex as other.
    let tenant = |t: &str| format!("use_case=\"notifications\",tenant=\"{t}\"");
    assert_eq!(
        series(&text, "async_jobs_tenant_backlog_jobs", &tenant("acme")),
        Some(3.0)
    );
    assert_eq!(
        series(&text, "async_jobs_tenant_backlog_jobs", &tenant("other")),
        Some(2.0)
    );
    assert!(!text.contains("tenant=\"globex\""), "{text}");
    let acme_age = series(
        &text,
        "async_jobs_tenant_oldest_pending_age_seconds",
        &tenant("acme"),
    );
    assert!(acme_age.is_some_and(|a| a <= age), "{acme_age:?} vs {age}");
    // The first job's start was counted once, for acme, beside the per-use-case series.
    assert_eq!(
        series(
            &text,
            "async_jobs_tenant_deadlines_met_total",
            &tenant("acme")
        ),
        Some(1.0)
    );
    assert_eq!(metric_sum(&text, "async_jobs_deadlines_met_total", uc), 1.0);
}

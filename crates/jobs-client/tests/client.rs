//! The client against a real API server on 127.0.0.1:0.

#![allow(clippy::unwrap_used)]

#[path = "../../jobs-http/tests/suite/flaky.rs"]
mod flaky;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use flaky::{all_jobs, flaky, FlakyStore};
use jobs_client::{ClientError, JobsClient, ListQuery};
use jobs_core::clock::SystemClock;
use jobs_core::config::QuotaConfig;
use jobs_core::memory::MemoryStore;
use jobs_core::{EnqueueRequest, JobService, JobStatus, PlatformConfig};
use jobs_http::{AppState, AuthConfig};
use tokio::sync::oneshot;

struct Server {
    url: String,
    store: Arc<FlakyStore>,
    _stop: oneshot::Sender<()>,
}

async fn start(auth: AuthConfig) -> Server {
    start_with(auth, jobs_http::HttpSettings::default()).await
}

async fn start_with(auth: AuthConfig, settings: jobs_http::HttpSettings) -> Server {
    let store = flaky(Arc::new(MemoryStore::new(Arc::new(SystemClock))));
    let config = PlatformConfig::default().with_quotas(QuotaConfig::unlimited().with_limit(
        "quota",
        "notifications",
        1,
    ));
    let service = JobService::new(store.clone(), Arc::new(config));
    let app = jobs_http::router(AppState::new(service, auth).with_settings(settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(jobs_http::server::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    Server {
        url,
        store,
        _stop: stop,
    }
}

fn client(url: &str) -> JobsClient {
    JobsClient::builder(url)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn req(tenant: &str) -> EnqueueRequest {
    EnqueueRequest::new(
        tenant,
        "notifications",
        "send_email",
        serde_json::json!({"to": "a@b.c"}),
    )
}

#[tokio::test]
async fn every_endpoint_round_trips() {
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    c.healthz().await.unwrap();
    c.readyz().await.unwrap();

    let first = c
        .enqueue_outcome(req("a").idempotency_key("k1"))
        .await
        .unwrap();
    assert!(first.created);
    let replay = c
        .enqueue_outcome(req("a").idempotency_key("k1"))
        .await
        .unwrap();
    assert_eq!((replay.created, replay.job.id), (false, first.job.id));
    let auto = c.enqueue(req("a")).await.unwrap();
    assert!(auto
        .idempotency_key
        .as_deref()
        .is_some_and(|k| k.starts_with("auto-")));
    let batch = c.enqueue_batch(vec![req("b"), req("b")]).await.unwrap();
    assert_eq!(batch.len(), 2);

    assert_eq!(c.get(first.job.id).await.unwrap(), first.job);
    let page = c
        .list(&ListQuery {
            tenant_id: Some("b".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((page.jobs.len(), page.next_cursor), (2, None));
    let all = c
        .list_all(&ListQuery {
            limit: Some(1),
            status: Some(JobStatus::Pending),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);

    let cancelled = c.cancel(auto.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(c.retry(auto.id).await.unwrap().status, JobStatus::Pending);

    let metrics = c.metrics().await.unwrap();
    assert!(metrics.contains("async_jobs_enqueued_total"), "{metrics}");
    let doc = c.openapi().await.unwrap();
    assert!(doc["paths"]["/jobs/{id}/retry"]["post"].is_object());

    // Nested under a prefix, the base URL carries the prefix.
    let prefixed = JobsClient::new(format!("{}/", server.url)).unwrap();
    prefixed.healthz().await.unwrap();
}

#[tokio::test]
async fn list_all_walks_through_short_and_empty_pages() {
    // The server examines 3 jobs per call: a rare type among 20 jobs comes in empty and short
    // pages, each with a cursor.
    let server = start_with(
        AuthConfig::open(),
        jobs_http::HttpSettings {
            list_max_scanned: 3,
            ..jobs_http::HttpSettings::default()
        },
    )
    .await;
    let c = client(&server.url);
    let mut rare = Vec::new();
    for i in 0..20 {
        let mut r = req("a");
        r.payload = serde_json::json!({"n": i});
        if i == 1 || i == 2 || i == 9 {
            r.kind = "rare_kind".into();
            rare.push(c.enqueue(r).await.unwrap());
        } else {
            c.enqueue(r).await.unwrap();
        }
    }
    rare.reverse(); // newest first
    let query = ListQuery {
        tenant_id: Some("a".into()),
        kind: Some("rare_kind".into()),
        ..ListQuery::default()
    };
    let first = c.list(&query).await.unwrap();
    assert!(
        first.jobs.is_empty() && first.next_cursor.is_some(),
        "the newest 3 jobs hold no match: an empty page with a cursor, {first:?}"
    );
    let all = c.list_all(&query).await.unwrap();
    assert_eq!(
        all.iter().map(|j| j.id).collect::<Vec<_>>(),
        rare.iter().map(|j| j.id).collect::<Vec<_>>()
    );
    assert!(
        all.iter().all(|j| j.payload.is_null()),
        "no payloads unless asked"
    );
    let with = c
        .list_all(&ListQuery {
            include_payload: true,
            ..query
        })
        .await
        .unwrap();
    assert_eq!(with, rare, "with payloads: the jobs as enqueued");
}

#[tokio::test]
async fn errors_are_typed() {
    let server = start(AuthConfig::operator_token("op").with_tenant_key("key-a", "a")).await;
    let op = JobsClient::builder(&server.url)
        .bearer_token("op")
        .build()
        .unwrap();
    let tenant_a = JobsClient::builder(&server.url)
        .bearer_token("key-a")
        .build()
        .unwrap();
    let nobody = client(&server.url);
    let wrong = JobsClient::builder(&server.url)
        .bearer_token("nope")
        .build()
        .unwrap();

    let err = nobody.enqueue(req("a")).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::AuthToken { status: 401, code, .. } if code == "unauthorized"),
        "{err:?}"
    );
    let err = wrong.get(uuid::Uuid::now_v7()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::AuthToken { status: 401, .. }),
        "{err:?}"
    );
    let err = tenant_a.enqueue(req("b")).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::AuthToken { status: 403, code, .. } if code == "forbidden_tenant"),
        "{err:?}"
    );
    nobody.healthz().await.unwrap();

    let err = op.get(uuid::Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(err, ClientError::JobNotFound { .. }), "{err:?}");
    let b_job = op.enqueue(req("b")).await.unwrap();
    let err = tenant_a.cancel(b_job.id).await.unwrap_err();
    assert!(
        matches!(err, ClientError::JobNotFound { .. }),
        "another tenant's job is not found: {err:?}"
    );

    let mut bad = req("a");
    bad.use_case = "nope".into();
    let err = op.enqueue(bad).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Validation { code, .. } if code == "unknown_use_case"),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("unknown_use_case"));
    let err = op
        .list(&ListQuery {
            cursor: Some("forged".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_cursor"));

    let err = op.retry(b_job.id).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::RemoteHttp { status: 409, code, .. } if code == "illegal_transition"),
        "{err:?}"
    );

    // Quota: the server's Retry-After (5 s) is above the client's bound here, so it gives up at once.
    let quick = JobsClient::builder(&server.url)
        .bearer_token("op")
        .config(jobs_client::ClientConfig {
            max_retry_after: Duration::from_secs(1),
            ..jobs_client::ClientConfig::default()
        })
        .build()
        .unwrap();
    quick.enqueue(req("quota")).await.unwrap();
    let err = quick.enqueue(req("quota")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::QuotaExceeded { retry_after: Some(d), .. } if d >= Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(all_jobs(server.store.inner().as_ref()).await.len(), 2);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct SendSms {
    to: String,
    text: String,
}

impl jobs_core::JobType for SendSms {
    const KIND: &'static str = "send_sms";
    const USE_CASE: Option<&'static str> = Some("notifications");
}

/// A value JSON cannot hold: a map keyed by pairs.
#[derive(serde::Serialize, serde::Deserialize)]
struct PairKeys(std::collections::BTreeMap<(u8, u8), u8>);

impl jobs_core::JobType for PairKeys {
    const KIND: &'static str = "pair_keys";
    const USE_CASE: Option<&'static str> = Some("notifications");
}

async fn enqueue_typed<J: jobs_core::JobType>(
    c: &JobsClient,
    job: &J,
) -> Result<jobs_core::Job, ClientError> {
    c.enqueue(EnqueueRequest::of("a", job)?).await
}

#[tokio::test]
async fn typed_jobs_travel_as_ordinary_jobs() {
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    let sms = SendSms {
        to: "+4412345".into(),
        text: "hi".into(),
    };
    let job = enqueue_typed(&c, &sms).await.unwrap();
    assert_eq!(
        (job.kind.as_str(), job.use_case.as_str()),
        ("send_sms", "notifications")
    );
    let stored = c.get(job.id).await.unwrap();
    assert_eq!(
        serde_json::from_value::<SendSms>(stored.payload).unwrap(),
        sms
    );

    // Refused before sending, with the code the server would use.
    let pairs = PairKeys([((1, 2), 3)].into_iter().collect());
    let err = enqueue_typed(&c, &pairs).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Validation { code, message }
            if code == "payload_not_serializable" && message.contains("pair_keys")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(all_jobs(server.store.inner().as_ref()).await.len(), 1);
}

#[tokio::test]
async fn a_503_then_success_makes_exactly_one_job() {
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    server
        .store
        .interceptor()
        .enqueue_unavailable_before
        .store(1, SeqCst);
    let job = c.enqueue(req("a")).await.unwrap();
    assert_eq!(
        server
            .store
            .interceptor()
            .enqueue_unavailable_before
            .load(SeqCst),
        0,
        "the 503 happened"
    );
    let jobs = all_jobs(server.store.inner().as_ref()).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, job.id);
}

#[tokio::test]
async fn a_lost_answer_then_retry_makes_exactly_one_job() {
    // The store commits, then the answer is lost (503): the retry carries the same key.
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    server
        .store
        .interceptor()
        .enqueue_unavailable_after
        .store(1, SeqCst);
    let outcome = c.enqueue_outcome(req("a")).await.unwrap();
    assert!(
        !outcome.created,
        "the retry found the job the first attempt made"
    );
    let jobs = all_jobs(server.store.inner().as_ref()).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, outcome.job.id);
    // A 500 is retried too.
    server.store.interceptor().enqueue_internal.store(1, SeqCst);
    c.enqueue(req("a")).await.unwrap();
    assert_eq!(all_jobs(server.store.inner().as_ref()).await.len(), 2);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    server
        .store
        .interceptor()
        .enqueue_unavailable_before
        .store(100, SeqCst);
    let err = c.enqueue(req("a")).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::RemoteHttp { status: 503, code, .. } if code == "store_unavailable"),
        "{err:?}"
    );
    assert_eq!(
        server
            .store
            .interceptor()
            .enqueue_unavailable_before
            .load(SeqCst),
        96,
        "1 attempt + 3 retries"
    );
    assert!(all_jobs(server.store.inner().as_ref()).await.is_empty());
}

#[tokio::test]
async fn a_store_timeout_is_not_repeated() {
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    let faults = server.store.interceptor();
    faults.enqueue_timeout.store(100, SeqCst);
    let err = c.enqueue(req("a")).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::RemoteHttp { status: 503, code, .. } if code == "store_timeout"),
        "{err:?}"
    );
    assert_eq!(faults.enqueue_timeout.load(SeqCst), 99, "one attempt only");
    assert!(err.is_retryable(), "the caller may retry it later");
    faults.enqueue_timeout.store(0, SeqCst);
    c.enqueue(req("a")).await.unwrap();
}

#[tokio::test]
async fn transport_failures_and_timeouts() {
    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(&format!("http://127.0.0.1:{port}"));
    let err = c.get(uuid::Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let c = JobsClient::builder(format!("http://{addr}"))
        .timeout(Duration::from_millis(200))
        .max_retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    let err = c.get(uuid::Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    hold.abort();
}

#[tokio::test]
async fn wait_for_polls_until_terminal_or_timeout() {
    let server = start(AuthConfig::open()).await;
    let c = JobsClient::builder(&server.url)
        .config(jobs_client::ClientConfig {
            poll_interval: Duration::from_millis(20),
            ..jobs_client::ClientConfig::default()
        })
        .build()
        .unwrap();
    let job = c.enqueue(req("a")).await.unwrap();
    let err = c
        .wait_for(job.id, Duration::from_millis(150))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::WaitTimeout { job_id, last: Some(last), .. } if *job_id == job.id && last.status == JobStatus::Pending),
        "{err:?}"
    );
    // Cancelled while the client waits: it returns the terminal job.
    let store = server.store.clone();
    let id = job.id;
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        jobs_core::ApiStore::cancel(store.as_ref(), id)
            .await
            .unwrap();
    });
    let done = c.wait_for(job.id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    canceller.await.unwrap();
    let err = c
        .wait_for(uuid::Uuid::now_v7(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::JobNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn trace_context_travels_as_traceparent() {
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    let tc =
        jobs_core::TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap()
            .with_tracestate("vendor=1");
    let job = c.enqueue(req("t").trace_context(tc.clone())).await.unwrap();
    assert_eq!(job.trace_context.as_ref(), Some(&tc));
    assert_eq!(c.get(job.id).await.unwrap().trace_context, Some(tc.clone()));
    let batch = c
        .enqueue_batch(vec![req("t"), req("t").trace_context(tc.clone())])
        .await
        .unwrap();
    assert!(batch.iter().all(|j| j.trace_context.as_ref() == Some(&tc)));
    let plain = c.enqueue(req("t")).await.unwrap();
    assert_eq!(plain.trace_context, None);
}

/// With the `otel` feature, an enqueue inside a traced span forwards that span's context.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "current_thread")]
async fn the_current_span_is_forwarded_with_the_otel_feature() {
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    let span = tracing::info_span!("enqueuing");
    let sc = span.context().span().span_context().clone();
    assert!(sc.is_valid());
    let job = tracing::Instrument::instrument(c.enqueue(req("t")), span)
        .await
        .unwrap();
    let tc = job.trace_context.expect("forwarded");
    // Same trace. (The in-process API shares this subscriber, so it stores its own request
    // span, a child of ours, as the parent.)
    assert_eq!(tc.trace_id(), sc.trace_id().to_bytes());
    assert_ne!(tc.parent_id(), sc.span_id().to_bytes());
}

#[tokio::test]
async fn schedules_round_trip() {
    use jobs_core::{JobTemplate, MissedPolicy, NewSchedule, ScheduleSource};
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    let new = NewSchedule {
        name: "every.minute_1".into(),
        cron: "0 * * * * *".into(),
        timezone: "Europe/Berlin".into(),
        template: JobTemplate::new(
            "a",
            "notifications",
            "send_email",
            serde_json::json!({"n": 1}),
        ),
        missed: MissedPolicy::CatchUp { max: 2 },
    };
    let created = c.create_schedule(&new).await.unwrap();
    assert_eq!(created.name, new.name);
    assert_eq!(created.source, ScheduleSource::Api);
    assert!(created.next_run_at > chrono::Utc::now() - chrono::Duration::seconds(1));
    assert_eq!(c.schedule(&new.name).await.unwrap(), created);
    assert_eq!(c.schedules().await.unwrap(), vec![created.clone()]);

    let mut def = new.definition();
    def.template.payload = serde_json::json!({"n": 2});
    let updated = c.update_schedule(&new.name, &def).await.unwrap();
    assert_eq!(updated.template.payload, serde_json::json!({"n": 2}));
    assert_eq!(updated.next_run_at, created.next_run_at);

    match c.create_schedule(&new).await.unwrap_err() {
        ClientError::RemoteHttp {
            status: 409, code, ..
        } => assert_eq!(code, "schedule_exists"),
        e => panic!("{e:?}"),
    }
    let mut bad = new.clone();
    bad.name = "other".into();
    bad.cron = "every minute".into();
    match c.create_schedule(&bad).await.unwrap_err() {
        ClientError::Validation { code, .. } => assert_eq!(code, "invalid_cron"),
        e => panic!("{e:?}"),
    }

    c.delete_schedule(&new.name).await.unwrap();
    match c.schedule(&new.name).await.unwrap_err() {
        ClientError::RemoteHttp {
            status: 404, code, ..
        } => assert_eq!(code, "schedule_not_found"),
        e => panic!("{e:?}"),
    }
    assert!(c.schedules().await.unwrap().is_empty());
}

/// A tenant id that URLs cannot carry as a path segment (`.`, `..`, empty) is refused by the
/// client, before any request: URL parsing would turn `/pauses/notifications/tenants/..` into
/// `/pauses/notifications`, a pause of the whole use case.
#[tokio::test]
async fn dot_segments_are_refused_before_they_reach_another_route() {
    let server = start(AuthConfig::open()).await;
    let c = client(&server.url);
    for tenant in ["..", ".", ""] {
        let scope = jobs_core::PauseScope::tenant("notifications", tenant);
        for outcome in [
            c.pause(&scope).await.map(|_| ()),
            c.resume(&scope).await.map(|_| ()),
        ] {
            match outcome {
                Err(ClientError::Validation { code, .. }) => {
                    assert_eq!(code, "invalid_path_segment", "{tenant:?}")
                }
                other => panic!("{tenant:?}: {other:?}"),
            }
        }
    }
    assert!(c.pauses().await.unwrap().is_empty(), "nothing was paused");
    // A tenant id with dots inside is an ordinary segment.
    let scope = jobs_core::PauseScope::tenant("notifications", "a..b");
    assert_eq!(c.pause(&scope).await.unwrap().scope, scope);
}

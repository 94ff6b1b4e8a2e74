//! Typed jobs end to end on the in-memory platform: a typed producer and a typed handler agree on
//! the kind and the shape, a payload of another shape ends dead with the decode message, and the
//! kind is written once.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use jobs_core::testkit::{assert_enqueued, TestPlatform};
use jobs_core::{
    ApiStore, EnqueueRequest, HandlerError, HandlerRegistry, HandlerResult, JobContext, JobHandler,
    JobStatus, JobType,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LabelMessage {
    message_id: String,
    labels: Vec<String>,
}

impl JobType for LabelMessage {
    const KIND: &'static str = "label_message_v2";
    const USE_CASE: Option<&'static str> = Some("message_labeling");
}

/// Keeps every job it is given, with the kind and use case it ran under.
#[derive(Clone, Default)]
struct Labeler {
    seen: Arc<Mutex<Vec<(String, String, LabelMessage)>>>,
}

impl JobHandler for Labeler {
    type Job = LabelMessage;

    async fn handle(&self, ctx: JobContext, job: LabelMessage) -> HandlerResult {
        if job.labels.is_empty() {
            return Err(HandlerError::permanent("no labels"));
        }
        self.seen
            .lock()
            .unwrap()
            .push((ctx.kind.clone(), ctx.use_case.clone(), job));
        Ok(())
    }
}

fn message() -> LabelMessage {
    LabelMessage {
        message_id: "m-1".into(),
        labels: vec!["refund".into(), "urgent".into()],
    }
}

#[tokio::test]
async fn a_typed_producer_and_a_typed_handler_agree() {
    let platform = TestPlatform::new();
    let labeler = Labeler::default();
    let mut handlers = HandlerRegistry::new();
    handlers.register_job(labeler.clone());

    let enqueued = platform
        .service
        .enqueue(EnqueueRequest::of("acme", &message()).unwrap())
        .await
        .unwrap();
    let job = assert_enqueued(platform.store.as_ref(), LabelMessage::KIND).await;
    assert_eq!(job.id, enqueued.job.id);
    assert_eq!(job.use_case, "message_labeling");

    let report = platform.work_until_idle(&handlers).await;
    assert_eq!((report.attempts, report.succeeded), (1, 1), "{report:?}");
    assert_eq!(
        *labeler.seen.lock().unwrap(),
        [(
            "label_message_v2".to_owned(),
            "message_labeling".to_owned(),
            message()
        )]
    );
    let done = platform.store.get(job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn a_batch_of_typed_requests_runs_through_the_closure_form() {
    let platform = TestPlatform::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut handlers = HandlerRegistry::new();
    let sink = Arc::clone(&seen);
    handlers.register_job_fn(move |_ctx, job: LabelMessage| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().unwrap().push(job.message_id);
            Ok(())
        }
    });
    let requests = ["a", "b", "c"]
        .into_iter()
        .map(|id| {
            let job = LabelMessage {
                message_id: id.into(),
                ..message()
            };
            EnqueueRequest::of("acme", &job)
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    platform.service.enqueue_many(requests).await.unwrap();
    let report = platform.work_until_idle(&handlers).await;
    assert_eq!(report.succeeded, 3, "{report:?}");
    let mut ids = seen.lock().unwrap().clone();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_payload_of_the_wrong_shape_ends_dead_with_the_decode_message() {
    let platform = TestPlatform::new();
    let labeler = Labeler::default();
    let mut handlers = HandlerRegistry::new();
    handlers.register_job(labeler.clone());

    // Another producer (say, over HTTP) sends the right type with the wrong shape.
    let bad = EnqueueRequest::new(
        "acme",
        "message_labeling",
        LabelMessage::KIND,
        json!({"message_id": 7}),
    )
    .max_attempts(5);
    let job = platform.service.enqueue(bad).await.unwrap().job;

    let report = platform.work_until_idle(&handlers).await;
    // Permanent: dead after one attempt, no retry.
    assert_eq!((report.attempts, report.dead), (1, 1), "{report:?}");
    let dead = platform.store.get(job.id).await.unwrap().unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    let error = dead.last_error.unwrap_or_default();
    assert!(
        error.starts_with("payload of 'label_message_v2' does not decode"),
        "{error}"
    );
    assert!(labeler.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_kind_is_written_once() {
    let mut handlers = HandlerRegistry::new();
    handlers.register_job(Labeler::default());
    let request = EnqueueRequest::typed("acme", "notifications", &message()).unwrap();
    // The registry's key and the request's type are both the declaration's.
    assert_eq!(handlers.kinds().collect::<Vec<_>>(), [LabelMessage::KIND]);
    assert_eq!(request.kind, LabelMessage::KIND);
    // Over the wire it is an ordinary job: `type` is the kind, the payload the value's JSON.
    let body = serde_json::to_value(&request).unwrap();
    assert_eq!(body["type"], json!("label_message_v2"));
    assert_eq!(body["payload"], serde_json::to_value(message()).unwrap());
}

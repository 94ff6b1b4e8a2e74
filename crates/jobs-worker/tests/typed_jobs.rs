//! Typed jobs through the worker runtime on in-memory ports: the job a typed producer enqueues is
//! the value its typed handler receives, and a payload of another shape ends dead after one
//! attempt with the decode message.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use jobs_core::{
    EnqueueRequest, HandlerError, HandlerRegistry, HandlerResult, JobContext, JobHandler,
    JobStatus, JobType,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reminder {
    user_id: u64,
    text: String,
    channels: Vec<String>,
}

impl JobType for Reminder {
    const KIND: &'static str = "send_reminder";
    const USE_CASE: Option<&'static str> = Some(NOTIFICATIONS);
}

/// Keeps each reminder it is given, with the kind it ran under.
#[derive(Clone, Default)]
struct Reminders {
    seen: Arc<Mutex<Vec<(String, Reminder)>>>,
}

impl JobHandler for Reminders {
    type Job = Reminder;

    async fn handle(&self, ctx: JobContext, job: Reminder) -> HandlerResult {
        if job.channels.is_empty() {
            return Err(HandlerError::permanent("no channel"));
        }
        self.seen
            .lock()
            .expect("not poisoned")
            .push((ctx.kind.clone(), job));
        Ok(())
    }
}

fn reminder() -> Reminder {
    Reminder {
        user_id: 42,
        text: "standup in 5 minutes".into(),
        channels: vec!["email".into(), "push".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_hands_a_typed_handler_the_value_a_typed_producer_enqueued() {
    let reminders = Reminders::default();
    let mut handlers = HandlerRegistry::new();
    handlers.register_job(reminders.clone());
    let mut h = Harness::start(handlers, worker_config());

    let request = EnqueueRequest::of("acme", &reminder()).expect("serializes");
    let job = h.enqueue_req(request).await;
    assert_eq!(
        (job.kind.as_str(), job.use_case.as_str()),
        (Reminder::KIND, NOTIFICATIONS)
    );
    assert_eq!(h.dispatch().await, 1);
    let done = h.wait_status(job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 1);
    assert_eq!(
        *reminders.seen.lock().expect("not poisoned"),
        [("send_reminder".to_owned(), reminder())]
    );
    let report = h.shutdown().await;
    assert_eq!((report.claimed, report.succeeded), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_of_the_wrong_shape_is_a_permanent_failure_with_the_decode_message() {
    let reminders = Reminders::default();
    let mut handlers = HandlerRegistry::new();
    handlers.register_job(reminders.clone());
    let mut h = Harness::start(handlers, worker_config());

    // The right type from an untyped producer, with `user_id` as a string.
    let job = h
        .enqueue_req(
            EnqueueRequest::new(
                "acme",
                NOTIFICATIONS,
                Reminder::KIND,
                json!({"user_id": "42", "text": "hi", "channels": ["email"]}),
            )
            .max_attempts(5),
        )
        .await;
    assert_eq!(h.dispatch().await, 1);
    let dead = h.wait_status(job.id, JobStatus::Dead).await;
    assert_eq!(dead.attempts, 1, "a permanent failure is not retried");
    let error = dead.last_error.unwrap_or_default();
    assert!(
        error.starts_with("payload of 'send_reminder' does not decode"),
        "{error}"
    );
    assert!(reminders.seen.lock().expect("not poisoned").is_empty());
    let report = h.shutdown().await;
    assert_eq!((report.claimed, report.dead), (1, 1));
}

//! SQS-specific behaviour against moto (`eval "$(scripts/moto.sh start)"`): batching, per-entry
//! failures, long polls, redelivery counts, stale receipts, error mapping and bounded failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use jobs_core::transport::{OutgoingMessage, Receipt, ReceivedMessage, Transport, TransportError};
use jobs_core::{DispatchMessage, PlatformConfig};
use jobs_sqs::{queue_urls_from_config, SqsOptions, SqsTransport};
use tokio::net::TcpListener;

const UC: &str = "notifications";

fn messages(n: usize) -> Vec<OutgoingMessage> {
    (0..n)
        .map(|i| OutgoingMessage {
            id: format!("entry-{i}"),
            body: format!("{{\"n\":{i}}}"),
        })
        .collect()
}

async fn receive_n(t: &SqsTransport, n: usize) -> Vec<ReceivedMessage> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < Duration::from_secs(20) {
        got.extend(t.receive(UC, 10, Duration::from_secs(1)).await.unwrap());
    }
    got
}

/// Messages in the queue, visible or in flight, as SQS counts them.
async fn depth(t: &SqsTransport) -> u64 {
    let out = t
        .client()
        .get_queue_attributes()
        .queue_url(t.queue_url(UC).unwrap())
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes().unwrap();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|k| attrs[k].parse::<u64>().unwrap())
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_more_than_ten_split_and_all_arrive() {
    let t = common::fresh(&[UC]).await;
    let failures = t.send_batch(UC, messages(25)).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        depth(&t).await,
        25,
        "25 messages in three batches (10 + 10 + 5)"
    );

    let got = receive_n(&t, 25).await;
    let bodies: BTreeSet<_> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, messages(25).into_iter().map(|m| m.body).collect());
    assert_eq!(got.len(), 25, "each exactly once");

    let failures = t
        .delete_batch(UC, got.iter().map(|m| m.receipt.clone()).collect())
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(depth(&t).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_split_by_bytes_too() {
    let t = common::fresh(&[UC]).await;
    // Six 100 KiB bodies: at most two fit under the 256 KiB batch limit.
    let big: Vec<_> = (0..6)
        .map(|i| OutgoingMessage {
            id: format!("big-{i}"),
            body: format!("{i}{}", "x".repeat(100 * 1024)),
        })
        .collect();
    let failures = t.send_batch(UC, big).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(depth(&t).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_entry_fails_alone() {
    let t = common::fresh(&[UC]).await;
    let mut batch = messages(12);
    batch[4].body = "o".repeat(300 * 1024); // over the 256 KiB limit
    batch[9].body = "nul \u{0} inside".to_owned(); // a character SQS refuses
    let failures = t.send_batch(UC, batch).await.unwrap();
    let failed: BTreeSet<_> = failures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        failed,
        BTreeSet::from(["entry-4", "entry-9"]),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.reason.contains("limit")),
        "{failures:?}"
    );
    assert_eq!(receive_n(&t, 10).await.len(), 10, "the other ten were sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_reports_unreadable_receipts_per_entry() {
    let t = common::fresh(&[UC]).await;
    t.send_batch(UC, messages(3)).await.unwrap();
    let got = receive_n(&t, 3).await;
    let mut receipts: Vec<_> = got.iter().map(|m| m.receipt.clone()).collect();
    receipts.insert(1, Receipt("not-a-receipt".into()));
    let failures = t.delete_batch(UC, receipts).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].id, "not-a-receipt");
    assert!(
        failures[0].reason.contains("ReceiptHandleIsInvalid"),
        "{failures:?}"
    );
    assert_eq!(depth(&t).await, 0, "the good receipts were deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_on_an_empty_queue_returns_after_the_wait() {
    let t = common::fresh(&[UC]).await;
    t.receive(UC, 1, Duration::ZERO).await.unwrap(); // warm the emulator up
    let start = Instant::now();
    let got = t.receive(UC, 10, Duration::from_secs(2)).await.unwrap();
    let waited = start.elapsed();
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(1800),
        "returned early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(6), "overran: {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_for_a_message_sent_during_the_wait() {
    let t = common::fresh(&[UC]).await;
    let sender = t.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sender.send_batch(UC, messages(1)).await.unwrap()
    });
    let start = Instant::now();
    let got = t.receive(UC, 10, Duration::from_secs(10)).await.unwrap();
    assert!(send.await.unwrap().is_empty());
    assert_eq!(got.len(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_count_grows_on_each_redelivery() {
    let t = common::fresh(&[UC]).await;
    t.send_batch(UC, messages(1)).await.unwrap();
    let mut receipts = Vec::new();
    for expected in 1..=3 {
        let m = receive_n(&t, 1).await.remove(0);
        assert_eq!(m.receive_count, expected);
        t.change_visibility(UC, m.receipt.clone(), Duration::ZERO)
            .await
            .unwrap();
        receipts.push(m.receipt);
    }
    assert_eq!(
        receipts
            .iter()
            .map(|r| r.0.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        3,
        "a receipt per delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_receipts_are_ok() {
    let t = common::fresh(&[UC]).await;
    t.send_batch(UC, messages(1)).await.unwrap();
    let first = receive_n(&t, 1).await.remove(0);
    t.change_visibility(UC, first.receipt.clone(), Duration::ZERO)
        .await
        .unwrap();
    let second = receive_n(&t, 1).await.remove(0);
    assert_eq!(second.message_id, first.message_id);

    // A superseded receipt still deletes the message (as SQS does) …
    assert_eq!(
        t.delete_batch(UC, vec![first.receipt.clone()])
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(depth(&t).await, 0);
    // … and receipts of a deleted message are fine to delete or release again.
    assert_eq!(
        t.delete_batch(UC, vec![second.receipt.clone(), first.receipt.clone()])
            .await
            .unwrap(),
        vec![]
    );
    t.change_visibility(UC, second.receipt, Duration::ZERO)
        .await
        .unwrap();
    t.change_visibility(UC, Receipt("never-issued".into()), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(t.receive(UC, 10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_use_case_and_missing_queue_are_unknown_queue() {
    let t = common::fresh(&[UC]).await;
    let err = t.send_batch("billing", messages(1)).await.unwrap_err();
    assert_eq!(err, TransportError::UnknownQueue("billing".into()));
    assert!(matches!(
        t.receive("billing", 1, Duration::ZERO).await,
        Err(TransportError::UnknownQueue(_))
    ));

    // A configured use case whose queue is gone: SQS says NonExistentQueue.
    t.delete_queue(t.queue_url(UC).unwrap()).await.unwrap();
    let unknown =
        |r: Result<_, TransportError>| matches!(r, Err(TransportError::UnknownQueue(u)) if u == UC);
    assert!(unknown(t.send_batch(UC, messages(1)).await.map(|_| ())));
    assert!(unknown(t.receive(UC, 1, Duration::ZERO).await.map(|_| ())));
    assert!(unknown(
        t.delete_batch(UC, vec![Receipt("r".into())])
            .await
            .map(|_| ())
    ));
    assert!(unknown(
        t.change_visibility(UC, Receipt("r".into()), Duration::ZERO)
            .await
    ));
    // Deleting it again is fine.
    t.delete_queue(t.queue_url(UC).unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_from_the_environment() {
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        assert!(
            std::env::var(var).is_ok(),
            "{var} is not set: run `eval \"$(scripts/moto.sh start)\"` (it exports the dummy AWS settings)"
        );
    }
    let admin = common::admin().await;
    let url = admin
        .create_queue(&common::unique_name("env"))
        .await
        .unwrap();
    let config =
        PlatformConfig::from_vars([("ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS", url.as_str())]).unwrap();
    let t = SqsTransport::from_env(queue_urls_from_config(&config).unwrap())
        .await
        .unwrap();
    assert_eq!(t.use_cases().collect::<Vec<_>>(), vec![UC]);

    let dispatch = DispatchMessage {
        v: jobs_core::transport::MESSAGE_VERSION,
        job_id: jobs_core::job::new_job_id(),
        lease_token: jobs_core::LeaseToken::generate(),
        use_case: UC.into(),
        kind: "send_email".into(),
        attempt: 1,
    };
    let sent = vec![OutgoingMessage {
        id: "d".into(),
        body: dispatch.encode(),
    }];
    assert!(t.send_batch(UC, sent).await.unwrap().is_empty());
    let got = receive_n(&t, 1).await;
    assert_eq!(
        DispatchMessage::decode(&got[0].body),
        Ok(dispatch),
        "the body arrives byte for byte"
    );
}

/// A transport whose only queue lives at an endpoint that is not there.
async fn transport_at(endpoint: &str, options: SqsOptions) -> SqsTransport {
    SqsTransport::builder([(UC, format!("{endpoint}/000000000000/gone"))])
        .endpoint_url(endpoint)
        .region("us-east-1")
        .static_credentials("test", "test")
        .options(options)
        .build()
        .await
        .unwrap()
}

async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
    // dropped: nothing listens there any more
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_endpoint_fails_fast_as_unavailable() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port().await);
    for options in [
        SqsOptions::default().without_retries(),
        SqsOptions::default(),
    ] {
        let attempts = options.max_attempts;
        let t = transport_at(&endpoint, options).await;
        let start = Instant::now();
        let send = t.send_batch(UC, messages(3)).await;
        let receive = t.receive(UC, 10, Duration::from_secs(20)).await;
        let delete = t.delete_batch(UC, vec![Receipt("r".into())]).await;
        let visibility = t
            .change_visibility(UC, Receipt("r".into()), Duration::ZERO)
            .await;
        let took = start.elapsed();
        assert!(
            matches!(send, Err(TransportError::Unavailable(_))),
            "{send:?}"
        );
        assert!(
            matches!(receive, Err(TransportError::Unavailable(_))),
            "{receive:?}"
        );
        assert!(
            matches!(delete, Err(TransportError::Unavailable(_))),
            "{delete:?}"
        );
        assert!(
            matches!(visibility, Err(TransportError::Unavailable(_))),
            "{visibility:?}"
        );
        assert!(
            took < Duration::from_secs(15),
            "{attempts} attempt(s) per call took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoint_times_out_instead_of_hanging() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = SqsOptions::default()
        .without_retries()
        .with_request_timeout(Duration::from_secs(1));
    let t = transport_at(&endpoint, options).await;

    let start = Instant::now();
    let send = t.send_batch(UC, messages(1)).await;
    assert!(
        matches!(send, Err(TransportError::Unavailable(_))),
        "{send:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "send took {:?}",
        start.elapsed()
    );

    // A receive may take its wait plus the request timeout, no longer.
    let start = Instant::now();
    let receive = t.receive(UC, 10, Duration::from_secs(1)).await;
    assert!(
        matches!(receive, Err(TransportError::Unavailable(_))),
        "{receive:?}"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "receive took {took:?}"
    );
    server.abort();
}

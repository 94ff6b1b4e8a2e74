//! The shared `Transport` conformance suite.
//!
//! Each case takes a factory `make(use_cases)` that returns a transport whose queues for exactly
//! those use cases are fresh and empty. Run all cases with
//! [`transport_conformance_tests!`](crate::transport_conformance_tests). Cases use short long-poll
//! waits and [`Transport::change_visibility`] instead of waiting out visibility timeouts, so they
//! suit slow emulators.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transport::{OutgoingMessage, Receipt, ReceivedMessage, Transport, TransportError};

/// Generates one `#[tokio::test]` per conformance case for a transport factory
/// `async fn(Vec<String>) -> Arc<dyn Transport>`.
#[macro_export]
macro_rules! transport_conformance_tests {
    ($make:path) => {
        $crate::transport_conformance_tests!(@cases $make;
            send_receive_delete,
            batches_larger_than_ten,
            received_messages_are_invisible_to_others,
            visibility_change_redelivers_with_a_higher_count,
            long_poll_returns_after_the_wait,
            receive_respects_max,
            queues_are_separate,
            unknown_use_case_is_an_error,
        );
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        mod transport_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    $crate::testkit::transport::$case($make).await;
                }
            )+
        }
    };
}

const ALPHA: &str = "alpha";
const BETA: &str = "beta";
const SHORT_WAIT: Duration = Duration::from_secs(1);

async fn transport<F, Fut>(make: F) -> Arc<dyn Transport>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    make(vec![ALPHA.to_owned(), BETA.to_owned()]).await
}

fn messages(prefix: &str, n: usize) -> Vec<OutgoingMessage> {
    (0..n)
        .map(|i| OutgoingMessage {
            id: format!("m{i}"),
            body: format!("{{\"test\":\"{prefix}-{i}\"}}"),
        })
        .collect()
}

/// Receives until `n` messages arrived or 20 s passed.
async fn receive_n(t: &dyn Transport, use_case: &str, n: usize) -> Vec<ReceivedMessage> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < Duration::from_secs(20) {
        got.extend(t.receive(use_case, 10, SHORT_WAIT).await.unwrap());
    }
    got
}

pub async fn send_receive_delete<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    let failures = t.send_batch(ALPHA, messages("a", 3)).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let got = receive_n(t.as_ref(), ALPHA, 3).await;
    assert_eq!(got.len(), 3);
    let bodies: BTreeSet<String> = got.iter().map(|m| m.body.clone()).collect();
    let sent: BTreeSet<String> = messages("a", 3).into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, sent);
    assert!(got.iter().all(|m| m.receive_count == 1));
    let failures = t
        .delete_batch(ALPHA, got.iter().map(|m| m.receipt.clone()).collect())
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    // Deleted messages never come back, even once their visibility timeout would have passed.
    for m in &got {
        let _ = t
            .change_visibility(ALPHA, m.receipt.clone(), Duration::ZERO)
            .await;
    }
    assert!(t.receive(ALPHA, 10, SHORT_WAIT).await.unwrap().is_empty());
}

pub async fn batches_larger_than_ten<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    let failures = t.send_batch(ALPHA, messages("big", 23)).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let got = receive_n(t.as_ref(), ALPHA, 23).await;
    let bodies: BTreeSet<String> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies.len(), 23, "each message exactly once");
    let failures = t
        .delete_batch(ALPHA, got.iter().map(|m| m.receipt.clone()).collect())
        .await
        .unwrap();
    assert!(
        failures.is_empty(),
        "a delete of more than ten splits too: {failures:?}"
    );
    assert!(t.receive(ALPHA, 10, SHORT_WAIT).await.unwrap().is_empty());
}

pub async fn received_messages_are_invisible_to_others<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    t.send_batch(ALPHA, messages("inv", 1)).await.unwrap();
    let first = receive_n(t.as_ref(), ALPHA, 1).await;
    assert_eq!(first.len(), 1);
    assert!(
        t.receive(ALPHA, 10, SHORT_WAIT).await.unwrap().is_empty(),
        "in flight: not delivered to a second receiver"
    );
}

pub async fn visibility_change_redelivers_with_a_higher_count<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    t.send_batch(ALPHA, messages("vis", 1)).await.unwrap();
    let first = receive_n(t.as_ref(), ALPHA, 1).await.remove(0);
    t.change_visibility(ALPHA, first.receipt.clone(), Duration::ZERO)
        .await
        .unwrap();
    let second = receive_n(t.as_ref(), ALPHA, 1).await.remove(0);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.body, first.body);
    assert_eq!(second.receive_count, 2);
    assert_ne!(
        second.receipt, first.receipt,
        "each delivery has its own receipt"
    );
    // Deleting with a superseded receipt is not an error.
    let stale = t.delete_batch(ALPHA, vec![first.receipt.clone()]).await;
    assert!(stale.is_ok(), "{stale:?}");
    let _ = t.delete_batch(ALPHA, vec![second.receipt]).await.unwrap();
    t.change_visibility(ALPHA, first.receipt, Duration::ZERO)
        .await
        .ok();
    assert!(t.receive(ALPHA, 10, SHORT_WAIT).await.unwrap().is_empty());
}

pub async fn long_poll_returns_after_the_wait<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    let start = Instant::now();
    let got = t.receive(ALPHA, 10, Duration::from_secs(2)).await.unwrap();
    let waited = start.elapsed();
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(1500),
        "long poll waited only {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(12),
        "long poll overran: {waited:?}"
    );
    // A message already there comes back without waiting out the poll.
    t.send_batch(ALPHA, messages("lp", 1)).await.unwrap();
    let start = Instant::now();
    let got = t.receive(ALPHA, 10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

pub async fn receive_respects_max<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    t.send_batch(ALPHA, messages("max", 5)).await.unwrap();
    let got = t.receive(ALPHA, 2, SHORT_WAIT).await.unwrap();
    assert!(!got.is_empty() && got.len() <= 2, "got {}", got.len());
    // Asking for more than the transport's batch limit gets at most the limit.
    let limit = t.max_receive_batch();
    assert!(limit >= 1, "max_receive_batch is {limit}");
    t.send_batch(ALPHA, messages("over", limit as usize + 3))
        .await
        .unwrap();
    let got = t.receive(ALPHA, limit + 3, SHORT_WAIT).await.unwrap();
    assert!(
        !got.is_empty() && got.len() <= limit as usize,
        "got {} with a limit of {limit}",
        got.len()
    );
}

pub async fn queues_are_separate<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    t.send_batch(ALPHA, messages("sep", 2)).await.unwrap();
    assert!(t.receive(BETA, 10, SHORT_WAIT).await.unwrap().is_empty());
    assert_eq!(receive_n(t.as_ref(), ALPHA, 2).await.len(), 2);
}

pub async fn unknown_use_case_is_an_error<F, Fut>(make: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let t = transport(make).await;
    let unknown = "no_such_use_case";
    let is_unknown =
        |e: TransportError| matches!(e, TransportError::UnknownQueue(u) if u == unknown);
    assert!(is_unknown(
        t.send_batch(unknown, messages("u", 1)).await.unwrap_err()
    ));
    assert!(is_unknown(
        t.receive(unknown, 1, SHORT_WAIT).await.unwrap_err()
    ));
    assert!(is_unknown(
        t.delete_batch(unknown, vec![Receipt("r".into())])
            .await
            .unwrap_err()
    ));
    assert!(is_unknown(
        t.change_visibility(unknown, Receipt("r".into()), Duration::ZERO)
            .await
            .unwrap_err()
    ));
}

//! Shared helpers of the moto-backed tests: the endpoint, admin client and fresh queues.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jobs_sqs::{SqsOptions, SqsTransport};

/// The emulator's endpoint. Its absence fails the test: in CI a missing service is a failure.
pub(crate) fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL_SQS") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "AWS_ENDPOINT_URL_SQS is not set: these tests need the SQS emulator. From the repo root run \
             `eval \"$(scripts/moto.sh start)\"` and run the tests again in the same shell."
        ),
    }
}

/// A transport with no queues on the emulator, with pinned dummy credentials and region (so no
/// credential chain, and no instance metadata probe, is involved).
pub(crate) async fn admin() -> SqsTransport {
    admin_with(SqsOptions::default()).await
}

/// [`admin`] with options.
pub(crate) async fn admin_with(options: SqsOptions) -> SqsTransport {
    SqsTransport::builder(Vec::<(String, String)>::new())
        .endpoint_url(endpoint())
        .region("us-east-1")
        .static_credentials("test", "test")
        .options(options)
        .build()
        .await
        .expect("transport builds")
}

/// A queue name unique to this process and call (SQS: up to 80 of `[A-Za-z0-9_-]`).
pub(crate) fn unique_name(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(30)
        .collect();
    format!(
        "t-{tag}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A transport whose queues for exactly these use cases are new and empty.
pub(crate) async fn fresh(use_cases: &[&str]) -> SqsTransport {
    fresh_with(use_cases, SqsOptions::default()).await
}

/// [`fresh`] with options.
pub(crate) async fn fresh_with(use_cases: &[&str], options: SqsOptions) -> SqsTransport {
    let admin = admin_with(options).await;
    let mut urls = Vec::new();
    for uc in use_cases {
        let url = admin
            .create_queue(&unique_name(uc))
            .await
            .expect("create queue on the emulator");
        urls.push((uc.to_string(), url));
    }
    admin.with_queue_urls(urls)
}

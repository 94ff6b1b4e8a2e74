//! The emulator's own figures, measured with the bare SDK in the same run: its throughput
//! ceiling for the platform's request mix and its send-to-receive latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use serde_json::json;

use crate::stats::{percentiles, rate, round3, Percentiles};

/// A message body about the size of a dispatch message.
fn body(i: u64) -> String {
    format!(
        "{{\"v\":1,\"job_id\":\"{:032x}\",\"lease_token\":\"{:032x}\",\"use_case\":\"bench\",\"kind\":\"noop\",\"attempt\":1}}",
        i, i
    )
}

/// Messages per second through `SendMessageBatch(10)` + `ReceiveMessage(10)` +
/// `DeleteMessageBatch(10)` — the platform's request mix — with one sender and `receivers`
/// receive loops, for `messages` messages, at most `backlog` sent and not yet received at once.
///
/// The emulator slows down sharply as its queue grows, so the platform is compared with a
/// ceiling measured at its own backlog: the use case's cap bounds the jobs dispatched and not
/// yet finished, i.e. the messages in the queue.
pub async fn ceiling(
    client: &Client,
    url: &str,
    messages: u64,
    receivers: usize,
    backlog: u64,
) -> anyhow::Result<serde_json::Value> {
    let backlog = backlog.max(10);
    let start = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    {
        let (client, url, requests) = (client.clone(), url.to_owned(), Arc::clone(&requests));
        let received = Arc::clone(&received);
        set.spawn(async move {
            let mut sent = 0;
            while sent < messages {
                // Keep the queue as shallow as the scheduler's cap keeps it.
                while sent >= received.load(Ordering::Relaxed) + backlog {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let n = (messages - sent).min(10);
                let entries = (0..n)
                    .map(|i| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body(sent + i))
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                client
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await?;
                requests.fetch_add(1, Ordering::Relaxed);
                sent += n;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    for _ in 0..receivers.max(1) {
        let (client, url) = (client.clone(), url.to_owned());
        let (received, requests) = (Arc::clone(&received), Arc::clone(&requests));
        set.spawn(async move {
            while received.load(Ordering::Relaxed) < messages {
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await?;
                requests.fetch_add(1, Ordering::Relaxed);
                let msgs = out.messages();
                if msgs.is_empty() {
                    continue;
                }
                let entries = msgs
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let n = msgs.len() as u64;
                client
                    .delete_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await?;
                requests.fetch_add(1, Ordering::Relaxed);
                received.fetch_add(n, Ordering::Relaxed);
            }
            Ok(())
        });
    }
    let limit = Duration::from_secs(60 + messages / 20);
    let joined = tokio::time::timeout(limit, async {
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    match joined {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the SQS ceiling loop did not finish in {limit:?}"),
    }
    let secs = start.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    Ok(json!({
        "messages": got,
        "receivers": receivers,
        "backlog": backlog,
        "seconds": round3(secs),
        "messages_per_s": rate(got, secs),
        "requests_per_message": round3(requests.load(Ordering::Relaxed) as f64 / got.max(1) as f64),
    }))
}

/// Send-to-receive latency of single messages sent `interval` apart while one receiver
/// long-polls: `samples` messages.
pub async fn send_to_receive(
    client: &Client,
    url: &str,
    samples: u64,
    interval: Duration,
) -> anyhow::Result<Percentiles> {
    let origin = Instant::now();
    let receiver = {
        let (client, url) = (client.clone(), url.to_owned());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while (latencies.len() as u64) < samples {
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(5)
                    .send()
                    .await?;
                let now = origin.elapsed().as_secs_f64() * 1000.0;
                let mut entries = Vec::new();
                for (i, m) in out.messages().iter().enumerate() {
                    if let Some(sent) = m.body().and_then(|b| b.parse::<f64>().ok()) {
                        latencies.push(now - sent);
                    }
                    entries.push(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()?,
                    );
                }
                if !entries.is_empty() {
                    client
                        .delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries))
                        .send()
                        .await?;
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    };
    // Let the first long poll start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tick = tokio::time::interval(interval);
    for _ in 0..samples {
        tick.tick().await;
        let sent = origin.elapsed().as_secs_f64() * 1000.0;
        client
            .send_message()
            .queue_url(url)
            .message_body(format!("{sent}"))
            .send()
            .await?;
    }
    let latencies = tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .map_err(|_| anyhow::anyhow!("the SQS latency receiver did not get every message"))???;
    Ok(percentiles(latencies))
}

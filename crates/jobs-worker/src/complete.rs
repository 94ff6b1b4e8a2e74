//! Batched completions: successes of concurrent executions are recorded together with one
//! [`LeaseStore::complete_many`] call (one statement for the batch in the Postgres store), instead of
//! one round trip each.
//!
//! One batch is written at a time, and it takes every success already waiting (up to
//! [`MAX_BATCH`]) without waiting for more. An idle worker's success is written at once. Under
//! load, the successes that finish while one batch is being written make up the next one, so
//! batches grow with the load and the store's latency, as in a database's group commit. A fixed
//! 1 ms linger did as well for throughput and added ~2 ms to every idle job's enqueue-to-done.
//! Failures, releases and cancellations stay per job (they are rare and carry their own data).

use std::sync::Arc;
use std::time::Duration;

use jobs_core::{JobId, LeaseError, LeaseStore, LeaseToken, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Most completions per store call.
pub(crate) const MAX_BATCH: usize = 256;

type Request = (JobId, LeaseToken, oneshot::Sender<Result<(), LeaseError>>);

/// A handle to the batching task; cheap to clone. The task ends when every handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Completer {
    tx: mpsc::Sender<Request>,
}

impl Completer {
    /// Starts the batching task on `store`.
    /// Starts the batching task on `store`. A batch write that has not answered after
    /// `call_timeout` is given up and answered [`StoreError::Unavailable`] (each entry's
    /// execution then retries it under its lease), so one hung connection cannot stall every
    /// later success: the store sets no statement timeout of its own.
    pub(crate) fn spawn(store: Arc<dyn LeaseStore>, call_timeout: Duration) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(store, rx, call_timeout));
        Completer { tx }
    }

    /// Completes `id` under `token`, exactly as [`LeaseStore::complete`] would (the job is then
    /// `succeeded`).
    pub(crate) async fn complete(&self, id: JobId, token: LeaseToken) -> Result<(), LeaseError> {
        let (reply, answer) = oneshot::channel();
        // Only a bug (a panic in the batching task) stops the task while handles remain, and it
        // does not come back: not retryable, so the execution gives up and the reaper retries.
        let gone = || {
            LeaseError::Store(StoreError::Internal(
                "the completion batcher stopped".into(),
            ))
        };
        self.tx.send((id, token, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(store: Arc<dyn LeaseStore>, mut rx: mpsc::Receiver<Request>, call_timeout: Duration) {
    while let Some(first) = rx.recv().await {
        // Take whatever else is already waiting, without waiting for more: while one batch is
        // being written, the next one gathers, so batches grow with the load and an idle worker
        // records at once.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let (entries, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(id, token, reply)| ((id, token), reply))
            .unzip();
        #[cfg(feature = "fault-injection")]
        fault::stall_completions().await;
        let count = entries.len();
        let results = match tokio::time::timeout(call_timeout, store.complete_many(entries)).await {
            Ok(results) => results,
            Err(_elapsed) => {
                tracing::warn!(
                    jobs = count,
                    timeout_ms = call_timeout.as_millis() as u64,
                    "a completion batch did not answer in time; its jobs retry under their leases"
                );
                let timed_out = StoreError::Unavailable(format!(
                    "the completion write did not answer within {call_timeout:?}"
                ));
                (0..count)
                    .map(|_| Err(LeaseError::Store(timed_out.clone())))
                    .collect()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // The execution may have been aborted meanwhile; its answer is then moot.
            let _ = reply.send(result);
        }
    }
}

#[cfg(feature = "fault-injection")]
mod fault {
    use std::sync::OnceLock;
    use std::time::Duration;

    /// With `ASYNC_JOBS_FAULT_STALL_COMPLETIONS_MS=n` (n ≥ 1), every batch of successes waits `n`
    /// ms before it is written to the store: the "store slow or unreachable while outcomes are
    /// recorded" fault (heartbeats and every other call are untouched).
    pub(super) const ENV_STALL_COMPLETIONS_MS: &str = "ASYNC_JOBS_FAULT_STALL_COMPLETIONS_MS";

    fn stall() -> Option<Duration> {
        static STALL: OnceLock<Option<Duration>> = OnceLock::new();
        *STALL.get_or_init(|| {
            std::env::var(ENV_STALL_COMPLETIONS_MS)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|ms| *ms >= 1)
                .map(Duration::from_millis)
        })
    }

    pub(super) async fn stall_completions() {
        if let Some(stall) = stall() {
            tracing::warn!(
                stall_ms = stall.as_millis() as u64,
                "fault injection: stalling a completion batch before the store write"
            );
            tokio::time::sleep(stall).await;
        }
    }
}

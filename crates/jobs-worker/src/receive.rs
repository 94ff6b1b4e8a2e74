//! The receive loop of one use case: long-poll while a slot is free, sort out each message,
//! claim its job, hand claimed jobs to executions.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::transport::{Receipt, ReceivedMessage};
use jobs_core::{DispatchMessage, Job, JobStore, LeaseError, LeaseToken, Transport};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::execute::{flag_raised, Executor};
use crate::report::DropReason;

/// Longest pause after repeated receive failures.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);

/// One use case's loop.
#[derive(Debug)]
pub(crate) struct ReceiveLoop {
    pub(crate) use_case: String,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) executor: Arc<Executor>,
    pub(crate) slots: Arc<Semaphore>,
    /// Raised when the worker stops receiving.
    pub(crate) stop: watch::Receiver<bool>,
    /// Raised when the shutdown grace is over; executions release their jobs.
    pub(crate) hard_stop: watch::Receiver<bool>,
}

/// A message whose job was claimed, and the slot it will run in.
struct Claimed {
    job: Job,
    token: LeaseToken,
    /// When the claim request was sent: the lease lasts at least until this plus the lease.
    claim_sent: Instant,
    slot: OwnedSemaphorePermit,
}

impl ReceiveLoop {
    fn store(&self) -> &Arc<dyn JobStore> {
        self.executor.service.store()
    }

    /// Receives until `stop` is raised, then waits for this use case's executions to end.
    pub(crate) async fn run(self) {
        let span = tracing::info_span!("receive", use_case = %self.use_case);
        async move {
            let mut executions = JoinSet::new();
            let mut stop = self.stop.clone();
            let mut failures: u32 = 0;
            tracing::info!("receiving");
            loop {
                reap(&mut executions);
                if *stop.borrow() {
                    break;
                }
                // Poll only while a slot is free.
                let first = tokio::select! {
                    slot = Arc::clone(&self.slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_closed) => break,
                    },
                    () = flag_raised(&mut stop) => break,
                };
                // As many as free slots, up to the transport's batch limit (SQS: 10). While a
                // batch is being claimed, slots freed by finished jobs add up, so the next
                // receive is a large one under load.
                let max = u32::try_from(self.slots.available_permits() + 1)
                    .unwrap_or(u32::MAX)
                    .min(self.transport.max_receive_batch().max(1));
                let wait = self.executor.config.receive_wait;
                let received = tokio::select! {
                    received = self.transport.receive(&self.use_case, max, wait) => received,
                    () = flag_raised(&mut stop) => break,
                };
                let pause = match received {
                    Ok(messages) => {
                        failures = 0;
                        let (claimed, settled, store_failed) = self.sort(messages, first).await;
                        // Settled messages are deleted while the loop receives again (the
                        // store holds the claims already; a failed delete only means a stale
                        // redelivery, which the claim's fencing drops).
                        if !settled.is_empty() {
                            executions.spawn(
                                delete(Arc::clone(&self.transport), self.use_case.clone(), settled)
                                    .in_current_span(),
                            );
                        }
                        for c in claimed {
                            let executor = Arc::clone(&self.executor);
                            // Boxed: an execution's future is ~4.4 KB, and a task stores its
                            // future inline, copying it on spawn, on completion and when its
                            // output is read (memory copies were ~12 % of the bench process's
                            // CPU in 2a).
                            executions.spawn(Box::pin(executor.execute(
                                c.job,
                                c.token,
                                c.claim_sent,
                                self.hard_stop.clone(),
                                c.slot,
                            )));
                        }
                        store_failed.then_some(self.executor.config.error_backoff)
                    }
                    Err(e) => {
                        drop(first);
                        failures = failures.saturating_add(1);
                        crate::report::dependency_error("sqs", "receive");
                        if e.is_retryable() {
                            tracing::warn!(error = %e, failures, "receive failed; backing off");
                        } else {
                            tracing::error!(error = %e, failures, "receive refused; backing off");
                        }
                        let base = self.executor.config.error_backoff;
                        Some(
                            base.saturating_mul(1u32 << (failures.min(5) - 1))
                                .min(MAX_ERROR_BACKOFF),
                        )
                    }
                };
                if let Some(pause) = pause {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = flag_raised(&mut stop) => break,
                    }
                }
            }
            tracing::info!(in_flight = executions.len(), "stopped receiving");
            while let Some(done) = executions.join_next().await {
                log_join(done);
            }
        }
        .instrument(span)
        .await;
    }

    /// Sorts one batch: drops malformed, misrouted and stale messages and claims the rest while
    /// slots last — in one store round trip ([`jobs_core::LeaseStore::claim_many`]). Returns the
    /// claimed jobs, the receipts of the settled messages (to delete) and whether the store
    /// failed.
    async fn sort(
        &self,
        messages: Vec<ReceivedMessage>,
        first: OwnedSemaphorePermit,
    ) -> (Vec<Claimed>, Vec<Receipt>, bool) {
        let counters = &self.executor.counters;
        let lease = self.executor.config.heartbeat_lease;
        let mut spare = vec![first];
        let mut settled: Vec<Receipt> = Vec::new();
        let mut candidates = Vec::new();
        for m in messages {
            let msg = match DispatchMessage::decode(&m.body) {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::warn!(
                        message_id = %m.message_id,
                        receive_count = m.receive_count,
                        error = %e,
                        "dropping a message that is not a dispatch message"
                    );
                    counters.dropped(DropReason::Malformed);
                    settled.push(m.receipt);
                    continue;
                }
            };
            if msg.use_case != self.use_case {
                tracing::warn!(
                    message_id = %m.message_id,
                    job_id = %msg.job_id,
                    message_use_case = %msg.use_case,
                    "dropping a message sent to the wrong queue"
                );
                counters.dropped(DropReason::UseCaseMismatch);
                settled.push(m.receipt);
                continue;
            }
            let Some(slot) = spare
                .pop()
                .or_else(|| Arc::clone(&self.slots).try_acquire_owned().ok())
            else {
                // Another use case took the slots meanwhile: let someone else have the message.
                self.return_message(m.receipt).await;
                continue;
            };
            candidates.push((m, msg, slot));
        }

        let mut claimed = Vec::new();
        let mut store_failed = false;
        // The store computes each lease's expiry after it receives the request, so the lease
        // lasts at least until this instant plus the lease (the executions count from here).
        let claim_sent = Instant::now();
        let results = if candidates.is_empty() {
            Vec::new()
        } else {
            // The message names the job's use case: a store per use case goes straight to its
            // store instead of looking for the job in each.
            for (_, msg, _) in &candidates {
                self.store().hint_use_case(msg.job_id, &msg.use_case);
            }
            let claims = candidates
                .iter()
                .map(|(_, msg, _)| (msg.job_id, msg.lease_token))
                .collect();
            self.store().claim_many(claims, lease).await
        };
        for ((m, msg, slot), result) in candidates.into_iter().zip(results) {
            match result {
                Ok(job) => {
                    counters.claimed(&job);
                    settled.push(m.receipt);
                    claimed.push(Claimed {
                        job,
                        token: msg.lease_token,
                        claim_sent,
                        slot,
                    });
                }
                Err(LeaseError::LeaseLost(_)) => {
                    tracing::debug!(
                        message_id = %m.message_id,
                        job_id = %msg.job_id,
                        kind = %msg.kind,
                        receive_count = m.receive_count,
                        "dropping a stale message (duplicate delivery, or the job moved on)"
                    );
                    counters.dropped(DropReason::Stale);
                    settled.push(m.receipt);
                    drop(slot);
                }
                Err(LeaseError::Store(e)) => {
                    crate::report::dependency_error("store", "claim");
                    // Leave the message: it comes back after its visibility timeout.
                    tracing::warn!(
                        job_id = %msg.job_id,
                        error = %e,
                        "claim failed; leaving the message for redelivery"
                    );
                    store_failed = true;
                    drop(slot);
                }
            }
        }
        (claimed, settled, store_failed)
    }

    async fn return_message(&self, receipt: Receipt) {
        if let Err(e) = self
            .transport
            .change_visibility(&self.use_case, receipt, Duration::ZERO)
            .await
        {
            tracing::debug!(error = %e, "could not return a message early; it comes back after its visibility timeout");
        }
    }
}

fn reap(executions: &mut JoinSet<()>) {
    while let Some(done) = executions.try_join_next() {
        log_join(done);
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "an execution task panicked");
        }
    }
}

/// Deletes settled messages.
async fn delete(transport: Arc<dyn Transport>, use_case: String, receipts: Vec<Receipt>) {
    match transport.delete_batch(&use_case, receipts).await {
        Ok(failed) => {
            for f in failed {
                tracing::warn!(receipt = %f.id, reason = %f.reason, "deleting a message failed; it will come back as stale");
            }
        }
        Err(e) => {
            crate::report::dependency_error("sqs", "delete");
            tracing::warn!(error = %e, "deleting messages failed; they will come back as stale");
        }
    }
}

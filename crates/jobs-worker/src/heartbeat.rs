//! Keeping a job's lease alive, knowing until when it is confirmed, and hearing about cancel
//! requests on the way.
//!
//! The heartbeat is driven one beat at a time by the execution ([`Heartbeat::beat`]), so the
//! execution can race each beat against the handler, the recording of the outcome and the
//! instant the lease stops being confirmed, all in one task.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::handler::CancelHandle;
use jobs_core::{JobId, LeaseError, LeaseStore, LeaseToken};
use tokio::time::Instant;

/// The longest pause before a heartbeat that failed (store error) is tried again: a blip must not
/// cost a whole interval of the lease.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// `t + d`, or a year after `t` when `d` is too long for an `Instant` (a huge configured lease
/// must not panic).
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(365 * 24 * 3600))
}

/// What one beat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// The store renewed the lease; [`Heartbeat::confirmed_until`] moved on.
    Renewed,
    /// The store failed; the next beat comes sooner than usual. The confirmed expiry stays.
    Failed,
    /// The store refused the token: someone else holds the job now. The cancel signal was fired.
    LeaseLost,
    /// The beat was due past the `renew_until` it was given; nothing was sent.
    StoppedRenewing,
}

/// One job's lease as this worker knows it, and the beats that keep it.
#[derive(Debug)]
pub(crate) struct Heartbeat<'a> {
    store: Arc<dyn LeaseStore>,
    job_id: JobId,
    token: LeaseToken,
    lease: Duration,
    interval: Duration,
    cancel: &'a CancelHandle,
    /// The local instant until which the store has confirmed the lease (see [`Heartbeat::new`]).
    confirmed_until: Instant,
    /// When the next beat is due.
    next_at: Instant,
    cancel_seen: bool,
}

impl<'a> Heartbeat<'a> {
    /// The heartbeat of a job claimed with `token` by a claim request *sent* at `claim_sent`
    /// with a lease of `lease`. The store computed the lease's expiry from its own clock after
    /// that instant, so `claim_sent + lease` is a local instant the lease certainly lasts until;
    /// each renewal moves it to `sent + lease` the same way.
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        job_id: JobId,
        token: LeaseToken,
        lease: Duration,
        interval: Duration,
        claim_sent: Instant,
        cancel: &'a CancelHandle,
    ) -> Self {
        Heartbeat {
            store,
            job_id,
            token,
            lease,
            interval,
            cancel,
            confirmed_until: later(claim_sent, lease),
            next_at: later(claim_sent, interval),
            cancel_seen: false,
        }
    }

    /// The local instant until which the store has confirmed the lease. Past it the reaper may
    /// have handed the job on.
    pub(crate) fn confirmed_until(&self) -> Instant {
        self.confirmed_until
    }

    /// Waits until the next beat is due and renews the lease, unless that is past `renew_until`.
    /// A cancel request seen in a renewal fires `cancel` (once) and renewing goes on, so the
    /// handler can wind down and the worker record the cancellation under a valid lease.
    ///
    /// Cancel-safe: dropped while waiting, nothing happened; dropped while the renewal is in
    /// flight, the renewal may or may not have been applied and the confirmed expiry is unchanged
    /// (the conservative answer). The next call picks up where this one stopped.
    pub(crate) async fn beat(&mut self, renew_until: Option<Instant>) -> Beat {
        tokio::time::sleep_until(self.next_at).await;
        let sent = Instant::now();
        if renew_until.is_some_and(|until| sent >= until) {
            tracing::warn!(
                "attempt outlived its timeout and lease margin; no longer renewing its lease"
            );
            return Beat::StoppedRenewing;
        }
        match self
            .store
            .heartbeat(self.job_id, self.token, self.lease)
            .await
        {
            Ok(beat) => {
                tracing::trace!(lease_expires_at = %beat.lease_expires_at, "heartbeat");
                self.confirmed_until = self.confirmed_until.max(later(sent, self.lease));
                self.next_at = later(sent, self.interval);
                if beat.cancel_requested && !self.cancel_seen {
                    self.cancel_seen = true;
                    tracing::info!("cancel requested; signalling the handler");
                    self.cancel.cancel();
                }
                Beat::Renewed
            }
            Err(LeaseError::LeaseLost(_)) => {
                tracing::warn!("lease lost during heartbeat; cancelling the handler");
                self.cancel.cancel();
                Beat::LeaseLost
            }
            Err(LeaseError::Store(e)) => {
                crate::report::dependency_error("store", "heartbeat");
                let retry_in = self.interval.min(RETRY_AFTER_FAILURE);
                let left = self
                    .confirmed_until
                    .saturating_duration_since(Instant::now());
                tracing::warn!(
                    error = %e,
                    retry_in_ms = retry_in.as_millis() as u64,
                    confirmed_for_ms = left.as_millis() as u64,
                    "heartbeat failed; will try again"
                );
                self.next_at = later(Instant::now(), retry_in);
                Beat::Failed
            }
        }
    }
}

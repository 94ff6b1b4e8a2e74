//! Keeping a running job's lease alive, and hearing about cancel requests on the way.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::handler::CancelHandle;
use jobs_core::{JobId, JobStore, LeaseError, LeaseToken};
use tokio::time::Instant;

/// Why a heartbeat loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatEnd {
    /// The store refused the token: someone else holds the job now. The cancel signal was fired.
    LeaseLost,
    /// The attempt ran past `timeout + margin`; the lease is left to expire.
    StoppedRenewing,
}

/// What one heartbeat loop needs.
#[derive(Debug)]
pub(crate) struct Heartbeat<'a> {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) job_id: JobId,
    pub(crate) token: LeaseToken,
    pub(crate) lease: Duration,
    pub(crate) interval: Duration,
    /// No renewal after this instant.
    pub(crate) renew_until: Instant,
    pub(crate) cancel: &'a CancelHandle,
}

impl Heartbeat<'_> {
    /// Renews the lease every `interval` until the lease is lost or renewing must stop. A cancel
    /// request seen in a heartbeat fires `cancel` (once) and the loop keeps renewing, so the
    /// handler can wind down and the worker record the cancellation under a valid lease.
    pub(crate) async fn run(self) -> HeartbeatEnd {
        let mut cancel_seen = false;
        loop {
            tokio::time::sleep(self.interval).await;
            if Instant::now() >= self.renew_until {
                tracing::warn!(
                    "attempt outlived its timeout and lease margin; no longer renewing its lease"
                );
                return HeartbeatEnd::StoppedRenewing;
            }
            match self
                .store
                .heartbeat(self.job_id, self.token, self.lease)
                .await
            {
                Ok(beat) => {
                    tracing::trace!(lease_expires_at = %beat.lease_expires_at, "heartbeat");
                    if beat.cancel_requested && !cancel_seen {
                        cancel_seen = true;
                        tracing::info!("cancel requested; signalling the handler");
                        self.cancel.cancel();
                    }
                }
                Err(LeaseError::LeaseLost(_)) => {
                    tracing::warn!("lease lost during heartbeat; cancelling the handler");
                    self.cancel.cancel();
                    return HeartbeatEnd::LeaseLost;
                }
                Err(LeaseError::Store(e)) => {
                    tracing::warn!(error = %e, "heartbeat failed; will try again");
                }
            }
        }
    }
}

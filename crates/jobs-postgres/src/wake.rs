//! Coalesced wake-ups: the store's own connections fire no NOTIFY trigger; instead the store
//! sends the wake-ups itself after its commits, with at most one NOTIFY transaction in flight.
//!
//! NOTIFY takes a database-wide lock from the moment a notifying transaction prepares to commit
//! until it has committed, so a NOTIFY in every enqueue or completion serialises those commits
//! (and their WAL flushes). Sending from here instead costs one short transaction per burst:
//! whatever happens while a NOTIFY is in flight is folded into the next one. Nothing is lost —
//! a flag set after a commit is always followed by a NOTIFY that starts after it — and an idle
//! system still wakes within one round trip.

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::Pool;

// The store's pooled sessions turn the wake-up triggers off with `SET async_jobs.notify = 'off'`
// (see migration 2 and `SESSION_SETUP` in store.rs).
/// Turns them back on for the rest of a transaction (for `enqueue_in` on a pooled connection).
/// Also reports the transaction's isolation level (column `isolation`).
pub(crate) const TRIGGERS_ON_IN_TX: &str = "SELECT set_config('async_jobs.notify', 'on', true), \
     current_setting('transaction_isolation') AS isolation";

/// What has to be announced, and whether a sender is running.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    due: AtomicBool,
    freed: AtomicBool,
    busy: AtomicBool,
}

impl Coalescer {
    /// Records wake-ups to send; returns true when the caller must start a sender.
    pub(crate) fn note(&self, due: bool, freed: bool) -> bool {
        if due {
            self.due.store(true, Ordering::SeqCst);
        }
        if freed {
            self.freed.store(true, Ordering::SeqCst);
        }
        (due || freed) && !self.busy.swap(true, Ordering::SeqCst)
    }

    /// Takes the pending wake-ups, or releases the sender role when there are none (returns
    /// `None`; a wake-up noted meanwhile re-takes it).
    fn take(&self) -> Option<(bool, bool)> {
        loop {
            let due = self.due.swap(false, Ordering::SeqCst);
            let freed = self.freed.swap(false, Ordering::SeqCst);
            if due || freed {
                return Some((due, freed));
            }
            self.busy.store(false, Ordering::SeqCst);
            let again = self.due.load(Ordering::SeqCst) || self.freed.load(Ordering::SeqCst);
            if !again || self.busy.swap(true, Ordering::SeqCst) {
                return None;
            }
        }
    }

    /// Sends NOTIFYs until nothing is pending.
    pub(crate) async fn send_all(&self, pool: &Pool, channel: &str) {
        while let Some((due, freed)) = self.take() {
            let sql = match (due, freed) {
                (true, true) => "SELECT pg_notify($1, 'due'), pg_notify($1, 'freed')",
                (true, false) => "SELECT pg_notify($1, 'due')",
                _ => "SELECT pg_notify($1, 'freed')",
            };
            let mut sent = false;
            for _ in 0..3 {
                match pool.get().await {
                    // A statement from the connection's cache: one round trip. Executing the text
                    // prepared an unnamed statement first each time: two.
                    Ok(c) => match c.prepare_cached(sql).await {
                        Ok(stmt) => match c.execute(&stmt, &[&channel]).await {
                            Ok(_) => {
                                sent = true;
                                break;
                            }
                            Err(e) => tracing::debug!(error = %e, "sending a wake-up failed"),
                        },
                        Err(e) => tracing::debug!(error = %e, "sending a wake-up failed"),
                    },
                    Err(e) => tracing::debug!(error = %e, "no connection to send a wake-up"),
                }
            }
            if !sent {
                tracing::warn!("a wake-up could not be sent; the scheduler will find the work on its next poll");
            }
        }
    }
}

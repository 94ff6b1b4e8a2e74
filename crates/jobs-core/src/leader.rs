//! The leader-election port: at most one scheduler dispatches at a time.
//!
//! Correctness does not depend on it — caps are enforced inside the store's pick even with two
//! schedulers — but one active leader avoids duplicate work and contention. The Postgres adapter
//! holds a session advisory lock on a dedicated connection: when the leader dies, its connection
//! closes, the lock is freed, and a standby's next [`LeaderElection::try_acquire`] wins.

use async_trait::async_trait;

use crate::store::StoreError;

/// Held leadership. Dropping it without [`release`](Self::release) also gives it up (eventually,
/// when the underlying session ends).
#[async_trait]
pub trait LeaderLease: Send {
    /// True while leadership is still held (e.g. the lock's connection is alive).
    async fn is_held(&mut self) -> bool;

    /// Gives leadership up now.
    async fn release(self: Box<Self>);
}

/// A way to become leader.
#[async_trait]
pub trait LeaderElection: Send + Sync + std::fmt::Debug {
    /// Becomes leader if nobody else is: `Some(lease)` on success, `None` if another holder exists.
    async fn try_acquire(&self) -> Result<Option<Box<dyn LeaderLease>>, StoreError>;
}

/// Always leader: for a single process (the embedded quick start, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct SoleLeader;

struct SoleLease;

#[async_trait]
impl LeaderLease for SoleLease {
    async fn is_held(&mut self) -> bool {
        true
    }

    async fn release(self: Box<Self>) {}
}

#[async_trait]
impl LeaderElection for SoleLeader {
    async fn try_acquire(&self) -> Result<Option<Box<dyn LeaderLease>>, StoreError> {
        Ok(Some(Box::new(SoleLease)))
    }
}

//! Wake-ups for the scheduler: after a due enqueue and after a job leaves running.

use std::time::Duration;

use crate::store::Wakeup;

use super::{Fixture, MakeStore, LEASE};

async fn next(
    w: &mut Box<dyn crate::store::WakeupStream>,
) -> Result<Option<Wakeup>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), w.next()).await
}

pub async fn wakeups_on_due_enqueue_and_finish(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut wake = f.store.subscribe().await.unwrap();
    f.due("acme", "alpha").await;
    let w = next(&mut wake)
        .await
        .expect("a wake-up after a due enqueue");
    assert!(
        matches!(w, Some(Wakeup::JobDue) | Some(Wakeup::Resync)),
        "{w:?}"
    );
    let (id, token) = f.dispatch_one("alpha").await;
    f.store.claim(id, token, LEASE).await.unwrap();
    f.store.complete(id, token).await.unwrap();
    // Some wake-up (capacity freed) arrives after the job left running.
    let mut saw_capacity = false;
    while let Ok(Some(w)) = next(&mut wake).await {
        if matches!(w, Wakeup::CapacityFreed | Wakeup::Resync) {
            saw_capacity = true;
            break;
        }
    }
    assert!(saw_capacity, "a wake-up after a job finished");
}

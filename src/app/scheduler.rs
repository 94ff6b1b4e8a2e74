//! `async-jobs scheduler`: the Postgres store, SQS, the Postgres leader lock and the operations
//! endpoints around [`jobs_scheduler::Scheduler`].

use std::future::Future;

use jobs_core::JobService;
use jobs_scheduler::{BacklogMonitor, Cron, Dispatcher, Scheduler};

use super::settings::Settings;
use super::{ports, store, AppError};

/// Runs the scheduler `settings` describe until `shutdown` completes (the leader releases its
/// lock on the way out).
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let config = settings
        .scheduler
        .clone()
        .ok_or("the settings were not read for a scheduler")?;
    let pg = settings.require_postgres()?;
    // The transport first: a setting it refuses stops the process before the migrations run.
    let (transport, _) = ports::transport(&settings.transport, &settings.platform).await?;
    let choice = store::open(&settings.store).await?;
    // One leader for every store: the lock lives in the default store (see ARCHITECTURE.md).
    let leader = ports::leader_for(&choice);
    if let Some(routed) = choice.routes.clone() {
        tokio::spawn(warn_misplaced(routed));
    }
    let _ops = super::ops::spawn_ops(
        settings.health_addr,
        JobService::new(choice.store.clone(), settings.platform.clone()),
    )
    .await?;
    tracing::info!(
        schema = %pg.schema,
        use_cases = ?settings.platform.use_cases.keys().collect::<Vec<_>>(),
        "scheduler starting"
    );
    let cron = Cron::new(choice.store.clone(), settings.platform.clone())
        .with_configured(settings.schedules.clone().unwrap_or_default());
    // The leader exports the backlog gauges and the scaling signal (docs/metrics.md).
    let backlog = BacklogMonitor::new(
        choice.store.clone(),
        settings.platform.clone(),
        settings.backlog.clone().unwrap_or_default(),
    );
    let dispatcher = Dispatcher::new(choice.store, transport, settings.platform.clone(), config);
    Scheduler::new(dispatcher, leader)
        .with_cron(cron)
        .with_backlog(backlog)
        .run(shutdown)
        .await;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Logs the unfinished jobs left in a store their use case is no longer routed to (it was given
/// a store of its own, or moved, while it had jobs): no pick leases them there.
async fn warn_misplaced(routed: std::sync::Arc<jobs_core::RoutedStore>) {
    match routed.misplaced().await {
        Ok(found) => {
            for m in found {
                tracing::warn!(
                    store = %m.store,
                    routed_to = %m.routed_to,
                    use_case = %m.count.use_case,
                    status = %m.count.status,
                    jobs = m.count.count,
                    "unfinished jobs of a use case kept in another store: they will not be \
                     dispatched; move the use case back until they finish (see docs)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not look for jobs left in another store"),
    }
}

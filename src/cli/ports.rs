//! Choosing the store, transport and leader election from the environment (for `dev`).

use std::sync::Arc;

use jobs_core::leader::{LeaderElection, SoleLeader};
use jobs_core::memory::MemoryTransport;
use jobs_core::{PlatformConfig, Transport};
use jobs_http::app::StoreChoice;

use super::CliError;

/// Leader election that matches the store: a Postgres lock for Postgres, none for memory.
pub(crate) fn leader_for(choice: &StoreChoice) -> Result<Arc<dyn LeaderElection>, CliError> {
    Ok(match &choice.postgres {
        Some((connector, schema)) => Arc::new(jobs_postgres::PgLeaderElection::with_connector(
            connector.clone(),
            schema,
        )),
        None => Arc::new(SoleLeader),
    })
}

/// SQS when any use case has a queue URL (`ASYNC_JOBS_SQS_QUEUE_<USE_CASE>`), else the in-process
/// transport.
pub(crate) async fn transport_from_env(
    platform: &PlatformConfig,
) -> Result<(Arc<dyn Transport>, &'static str), CliError> {
    if platform.use_cases.values().any(|uc| uc.queue_url.is_some()) {
        let urls = jobs_sqs::queue_urls_from_config(platform)?;
        Ok((
            Arc::new(jobs_sqs::SqsTransport::from_env(urls).await?),
            "sqs",
        ))
    } else {
        Ok((
            Arc::new(MemoryTransport::new(platform.use_cases.keys().cloned())),
            "in-process",
        ))
    }
}

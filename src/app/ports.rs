//! The transport and the leader election a process's settings call for.

use std::sync::Arc;

use jobs_core::leader::{LeaderElection, SoleLeader};
use jobs_core::memory::MemoryTransport;
use jobs_core::{PlatformConfig, Transport};

use super::settings::TransportSettings;
use super::store::StoreChoice;
use super::AppError;

/// Leader election that matches the store: a Postgres lock (same connection settings and TLS as
/// the store) for Postgres, none for memory.
pub(crate) fn leader_for(choice: &StoreChoice) -> Arc<dyn LeaderElection> {
    match &choice.postgres {
        Some((connector, schema)) => Arc::new(jobs_postgres::PgLeaderElection::with_connector(
            connector.clone(),
            schema,
        )),
        None => Arc::new(SoleLeader),
    }
}

/// The transport `settings` describe, and its name for the logs. `Err` for
/// [`TransportSettings::None`] (a process that sends nothing asked for one) or when the AWS SDK
/// cannot be configured.
pub(crate) async fn transport(
    settings: &TransportSettings,
    platform: &PlatformConfig,
) -> Result<(Arc<dyn Transport>, &'static str), AppError> {
    match settings {
        TransportSettings::Sqs {
            queue_urls,
            options,
            region,
            endpoint_url,
        } => {
            let mut builder = jobs_sqs::SqsTransport::builder(queue_urls.clone())
                .options(options.clone())
                .region(region.clone());
            if let Some(url) = endpoint_url {
                builder = builder.endpoint_url(url.clone());
            }
            let sqs = builder.build().await?;
            Ok((Arc::new(sqs), "sqs"))
        }
        TransportSettings::InProcess => Ok((
            Arc::new(MemoryTransport::new(platform.use_cases.keys().cloned())),
            "in-process",
        )),
        TransportSettings::None => Err("this process has no transport configured".into()),
    }
}

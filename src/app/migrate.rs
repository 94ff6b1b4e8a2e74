//! `async-jobs migrate`: applies the migrations to the configured schema of every store — the
//! default one and each use case's own (`ASYNC_JOBS_<USE_CASE>_DB_DSN`) — and exits (safe to run
//! from several processes at once).

use super::settings::Settings;
use super::{store, AppError};

/// Applies the migrations to every distinct store, through pools with the store's connect and
/// wait timeouts (a database that accepts but never answers fails in seconds); returns the line
/// to print.
pub async fn run(settings: &Settings) -> Result<String, AppError> {
    let pg = settings.require_postgres()?;
    let routes = store::connect_all(pg, jobs_postgres::PoolOptions::default())?;
    let reports = store::migrate_all(&routes).await?;
    let line = match reports.as_slice() {
        [(_, report)] => format!("schema {}: {report:?}", pg.schema),
        many => many
            .iter()
            .map(|(store, report)| format!("{store}, schema {}: {report:?}", pg.schema))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Ok(line)
}

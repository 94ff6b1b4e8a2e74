//! `async-jobs migrate`: applies the migrations to the configured schema and exits (safe to run
//! from several processes at once).

use super::settings::Settings;
use super::AppError;

/// Applies the migrations through a pool with the store's connect and wait timeouts (a database
/// that accepts but never answers fails in seconds); returns the line to print.
pub async fn run(settings: &Settings) -> Result<String, AppError> {
    let pg = settings.require_postgres()?;
    let store = jobs_postgres::PgStore::connect_using(
        &pg.connector,
        &pg.schema,
        jobs_postgres::PoolOptions::default(),
    )?;
    let report = store.migrate().await?;
    Ok(format!("schema {}: {report:?}", pg.schema))
}

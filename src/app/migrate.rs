//! `async-jobs migrate`: applies the migrations to the configured schema and exits (safe to run
//! from several processes at once).

use super::settings::Settings;
use super::AppError;

/// Applies the migrations; returns the line to print.
pub async fn run(settings: &Settings) -> Result<String, AppError> {
    let pg = settings.require_postgres()?;
    let (client, connection) = pg.connector.connect().await.map_err(|e| {
        format!(
            "cannot connect with ASYNC_JOBS_DB_DSN: {}",
            jobs_postgres::tls::describe_error(&e)
        )
    })?;
    let conn = tokio::spawn(connection);
    let report = jobs_postgres::migrate(&client, &pg.schema).await?;
    drop(client);
    let _ = conn.await;
    Ok(if report.applied.is_empty() {
        format!("schema {} is up to date", pg.schema)
    } else {
        format!(
            "schema {}: applied migrations {:?}",
            pg.schema, report.applied
        )
    })
}

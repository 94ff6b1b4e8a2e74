//! `jobs-migrate`: applies the async-jobs schema migrations and exits.
//!
//! Reads `ASYNC_JOBS_DB_DSN` (required; `sslmode` / `sslrootcert` as in libpq, see
//! `jobs_postgres::tls`), `ASYNC_JOBS_DB_CA_FILE` (optional PEM bundle of trusted CAs) and
//! `ASYNC_JOBS_DB_SCHEMA` (default `async_jobs`).
//! Safe to run from several processes at once. On failure prints one line to stderr and exits 1.

use std::process::ExitCode;

async fn run() -> Result<String, String> {
    let dsn = std::env::var("ASYNC_JOBS_DB_DSN").map_err(|_| {
        "ASYNC_JOBS_DB_DSN is not set: expected a PostgreSQL connection string".to_owned()
    })?;
    let schema = std::env::var("ASYNC_JOBS_DB_SCHEMA")
        .unwrap_or_else(|_| jobs_postgres::DEFAULT_SCHEMA.to_owned());
    jobs_postgres::SchemaName::new(&schema).map_err(|e| format!("ASYNC_JOBS_DB_SCHEMA: {e}"))?;
    let connector = jobs_postgres::PgConnector::from_env_ca(&dsn).map_err(|e| e.to_string())?;
    let (client, connection) = connector.connect().await.map_err(|e| {
        format!(
            "cannot connect with ASYNC_JOBS_DB_DSN: {}",
            jobs_postgres::tls::describe_error(&e)
        )
    })?;
    let conn = tokio::spawn(connection);
    let report = jobs_postgres::migrate(&client, &schema)
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    let _ = conn.await;
    Ok(if report.applied.is_empty() {
        format!("schema {schema} is up to date")
    } else {
        format!("schema {schema}: applied migrations {:?}", report.applied)
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(message) => {
            println!("jobs-migrate: {message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("jobs-migrate: error: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

//! How PostgreSQL and pool failures become [`StoreError`]s.
//!
//! | failure | error |
//! |---|---|
//! | connection lost, refused or closed; server shutting down (SQLSTATE class 08, 57P01–57P03); too many connections (53300); pool timeout or closed | [`StoreError::Unavailable`] |
//! | serialization failure (40001), deadlock (40P01) | [`StoreError::Conflict`] |
//! | statement cancelled (57014 `query_canceled`): it ran past the session's `statement_timeout` ([`PoolOptions::statement_timeout`](crate::PoolOptions::statement_timeout)), or an operator cancelled it | [`StoreError::Timeout`] |
//! | anything else | [`StoreError::Internal`] |
//!
//! A cancel by `pg_cancel_backend` shares the SQLSTATE with the timeout and only the (possibly
//! translated) message tells them apart, so both are `Timeout`: either way the statement was cut
//! before it finished and its transaction rolled back.

use deadpool_postgres::PoolError;
use jobs_core::StoreError;
use tokio_postgres::error::SqlState;

/// Maps a tokio-postgres error.
pub(crate) fn pg(e: &tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Conflict(e.to_string())
        }
        Some(code) if *code == SqlState::QUERY_CANCELED => StoreError::Timeout(describe(e)),
        Some(code) if is_unavailable_code(code) => StoreError::Unavailable(describe(e)),
        Some(_) => StoreError::Internal(describe(e)),
        // No SQLSTATE: an I/O error, a closed connection, a timeout or a protocol failure.
        None if is_connection_loss(e) => StoreError::Unavailable(describe(e)),
        None => StoreError::Internal(describe(e)),
    }
}

/// Maps a pool checkout error.
pub(crate) fn pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg(&e),
        other => StoreError::Unavailable(format!("connection pool: {other}")),
    }
}

/// True when `e` means the connection is gone (so the statement cannot have committed on it
/// afterwards, and a fresh connection may succeed).
pub(crate) fn is_connection_loss(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return is_unavailable_code(code);
    }
    // tokio-postgres reports socket failures as errors without a SQLSTATE whose source is an
    // io::Error.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

fn is_unavailable_code(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
}

/// The error with the server's message and detail, on one line.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        // No server error: I/O, TLS (a refused certificate reads as one line naming the host
        // and sslmode), timeouts, protocol failures — with their causes.
        None => crate::tls::describe_error(e),
    }
}

/// A tokio-postgres error on one line, as the store reports it.
pub(crate) fn one_line(e: &tokio_postgres::Error) -> String {
    describe(e)
}

/// The failure of one attempt at an operation: a database error (which the caller may retry on a
/// fresh connection when it is a connection loss) or the operation's own error.
#[derive(Debug)]
pub(crate) enum Op<E> {
    /// The database failed.
    Pg(tokio_postgres::Error),
    /// The operation's own outcome (lease lost, quota exceeded, …).
    Fail(E),
}

impl<E> From<tokio_postgres::Error> for Op<E> {
    fn from(e: tokio_postgres::Error) -> Self {
        Op::Pg(e)
    }
}

impl<E: From<StoreError>> From<StoreError> for Op<E> {
    fn from(e: StoreError) -> Self {
        Op::Fail(E::from(e))
    }
}

impl<E: From<StoreError>> Op<E> {
    /// The error the caller sees.
    pub(crate) fn into_error(self) -> E {
        match self {
            Op::Pg(e) => E::from(pg(&e)),
            Op::Fail(e) => e,
        }
    }

    /// True when a fresh connection may succeed.
    pub(crate) fn is_connection_loss(&self) -> bool {
        matches!(self, Op::Pg(e) if is_connection_loss(e))
    }
}

//! Wake-ups over LISTEN/NOTIFY, on a dedicated connection.
//!
//! The pool cannot carry notifications (its connection futures drop them), so each subscription
//! opens its own connection, LISTENs on the schema's channel and forwards notifications from a
//! spawned task that polls the connection's messages. When the connection is lost the task
//! reconnects with capped exponential backoff, LISTENs again and emits [`Wakeup::Resync`],
//! because notifications sent in between are gone. The task ends when the stream is dropped.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::poll_fn;
use jobs_core::store::{Wakeup, WakeupStream};
use jobs_core::StoreError;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

use crate::error;
use crate::tls::{PgConnector, PgTlsStream};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A [`WakeupStream`] fed by a dedicated LISTEN connection.
#[derive(Debug)]
pub(crate) struct PgWakeups {
    rx: mpsc::Receiver<Wakeup>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PgWakeups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl WakeupStream for PgWakeups {
    /// Waits for a wake-up, then folds every wake-up already queued behind it into it
    /// ([`Wakeup::fold`]: a `Resync` among them wins, then a `JobDue`, as the scheduler paces
    /// freed places but never a due job), so a burst costs the scheduler one tick, not one per
    /// event.
    async fn next(&mut self) -> Option<Wakeup> {
        let mut wakeup = self.rx.recv().await?;
        while let Ok(more) = self.rx.try_recv() {
            wakeup = wakeup.fold(more);
        }
        Some(wakeup)
    }
}

/// Connects, LISTENs on `channel` and starts forwarding. Fails if the first connection fails.
pub(crate) async fn subscribe(
    config: PgConnector,
    channel: String,
) -> Result<PgWakeups, StoreError> {
    let (tx, rx) = mpsc::channel(256);
    let (client, connection) = listen(&config, &channel).await?;
    let task = tokio::spawn(forward(config, channel, tx, client, connection));
    Ok(PgWakeups { rx, task })
}

type Connection = tokio_postgres::Connection<tokio_postgres::Socket, PgTlsStream>;

async fn listen(config: &PgConnector, channel: &str) -> Result<(Client, Connection), StoreError> {
    let (client, mut connection) = config.connect().await.map_err(|e| error::pg(&e))?;
    // The connection must be polled for the LISTEN to complete; drive it until it does.
    let statement = format!("LISTEN \"{channel}\"");
    {
        let listen = client.batch_execute(&statement);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => {
                    done.map_err(|e| error::pg(&e))?;
                    break;
                }
                msg = poll_fn(|cx| connection.poll_message(cx)) => match msg {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(error::pg(&e)),
                    None => return Err(StoreError::Unavailable("connection closed during LISTEN".to_owned())),
                },
            }
        }
    }
    Ok((client, connection))
}

async fn forward(
    config: PgConnector,
    channel: String,
    tx: mpsc::Sender<Wakeup>,
    client: Client,
    connection: Connection,
) {
    let mut current = Some((client, connection));
    let mut backoff = MIN_BACKOFF;
    loop {
        if let Some((_client, mut connection)) = current.take() {
            backoff = MIN_BACKOFF;
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let wakeup = match n.payload() {
                            "freed" => Wakeup::CapacityFreed,
                            _ => Wakeup::JobDue,
                        };
                        if !wakeup.queue_into(&tx).await {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %error::one_line(&e), "wake-up connection lost; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!("wake-up connection closed; reconnecting");
                        break;
                    }
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match listen(&config, &channel).await {
            Ok(pair) => {
                current = Some(pair);
                if tx.send(Wakeup::Resync).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "wake-up reconnect failed"),
        }
    }
}

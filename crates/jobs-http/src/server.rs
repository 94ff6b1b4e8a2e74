//! Serving a router on a socket (used by `async-jobs api` and `dev`, the operations endpoints of
//! every process, and tests), with graceful shutdown and the [`ServerLimits`] that keep slow or
//! silent clients from holding the server.
//!
//! A plain `axum::serve` waits for ever: a client that sends half a request head, or trickles a
//! body one byte at a time, keeps its connection (and a file descriptor) for good, and enough of
//! them starve everyone else. Here each connection is in one of three phases, and each phase has a
//! bound:
//!
//! | phase | from | bound |
//! |---|---|---|
//! | idle | accept, or the end of the previous response | [`ServerLimits::idle_timeout`], then closed |
//! | head | the first byte of a request | [`ServerLimits::header_timeout`] to complete the head, then closed |
//! | serving | the end of the head | the body must arrive within [`ServerLimits::body_timeout`] (else 408 `body_timeout`) |
//!
//! At most [`ServerLimits::max_connections`] are held. At the cap a new connection replaces the
//! longest-waiting connection that is not serving a request, so clients that hold connections
//! without completing requests cannot keep a prompt client out; when every held connection is
//! serving, new connections wait in the listen queue until one finishes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};
use tower::Service as _;

pub use crate::limits::ServerLimits;
use crate::metrics as m;

/// Serves `app` on `listener` with the default [`ServerLimits`] until `shutdown` completes, then
/// lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, ServerLimits::default(), shutdown).await
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve_with(
    listener: TcpListener,
    app: axum::Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Server::new(limits).serve(listener, app, shutdown).await
}

/// The error a request body yields when it has not fully arrived within
/// [`ServerLimits::body_timeout`]. The JSON extractors answer it with 408 `body_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

impl BodyTimeout {
    /// True when `err`, or any error in its `source` chain, is a [`BodyTimeout`].
    pub fn is_cause_of(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(err);
        while let Some(e) = current {
            if e.is::<BodyTimeout>() {
                return true;
            }
            current = e.source();
        }
        false
    }
}

/// A server: the accept loop, and the connections it holds. Cheap to clone; clones share the
/// connection count.
#[derive(Debug, Clone)]
pub struct Server {
    limits: ServerLimits,
    registry: Arc<Registry>,
}

impl Server {
    /// A server enforcing `limits` (a `max_connections` of 0 counts as 1).
    pub fn new(limits: ServerLimits) -> Self {
        Server {
            limits: ServerLimits {
                max_connections: limits.max_connections.max(1),
                ..limits
            },
            registry: Arc::default(),
        }
    }

    /// Connections held now (accepted and not yet closed).
    pub fn open_connections(&self) -> usize {
        self.registry.len()
    }

    /// Held connections serving a request now (the rest are idle or receiving a request head).
    pub fn serving_connections(&self) -> usize {
        self.registry
            .conns()
            .values()
            .filter(|c| c.waiting_since().is_none())
            .count()
    }

    /// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets each
    /// connection finish the request it is serving, and returns once every connection is closed.
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut shutdown = pin!(shutdown);
        let max = self.limits.max_connections;
        'accept: loop {
            // Wait for room: a free slot, or a held connection that may give its slot up.
            while !self.registry.has_room(max) {
                tokio::select! {
                    () = self.registry.changed.notified() => {}
                    () = &mut shutdown => break 'accept,
                }
            }
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) if is_connection_error(&err) => continue,
                    Err(err) => {
                        // Out of file descriptors and the like: give the process a moment
                        // instead of spinning.
                        tracing::error!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break 'accept,
            };
            // The room seen before `accept` may be gone (the connection that could give its
            // slot up has begun a request meanwhile): hold this one, unserved, until there is.
            while self.registry.len() >= max && !self.registry.evict_longest_waiting() {
                tokio::select! {
                    () = self.registry.changed.notified() => {}
                    () = &mut shutdown => break 'accept,
                }
            }
            // Small JSON responses: send them at once.
            let _ = stream.set_nodelay(true);
            let (id, conn) = self.registry.insert();
            tokio::spawn(run_connection(
                stream,
                app.clone(),
                self.limits,
                conn,
                ConnSlot {
                    registry: self.registry.clone(),
                    id,
                },
                stop_rx.clone(),
            ));
        }
        drop(listener);
        let _ = stop_tx.send(true);
        while self.registry.len() > 0 {
            self.registry.changed.notified().await;
        }
        Ok(())
    }
}

/// Errors of one incoming connection that say nothing about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Where a connection is in its life (see the module docs).
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress since this instant.
    Idle(Instant),
    /// A request's first byte arrived at this instant; its head is not complete.
    Head(Instant),
    /// A request is being served.
    Serving,
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy)]
enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Evicted => "evicted",
        }
    }
}

/// One held connection's shared state.
#[derive(Debug)]
struct Conn {
    phase: Mutex<Phase>,
    evicted: AtomicBool,
    /// Wakes the connection's task to re-read its phase or eviction.
    wake: Notify,
}

impl Conn {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        self.wake.notify_one();
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn on_read(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.wake.notify_one();
        }
    }

    /// Since when it has been waiting for a client (idle or in a head), if it is.
    fn waiting_since(&self) -> Option<Instant> {
        match self.phase() {
            Phase::Idle(at) | Phase::Head(at) => Some(at),
            Phase::Serving => None,
        }
    }

    /// When the current phase's bound runs out, and why.
    fn deadline(&self, limits: &ServerLimits) -> Option<(Instant, CloseReason)> {
        match self.phase() {
            Phase::Idle(at) => Some((at + limits.idle_timeout, CloseReason::IdleTimeout)),
            Phase::Head(at) => Some((at + limits.header_timeout, CloseReason::HeaderTimeout)),
            Phase::Serving => None,
        }
    }
}

/// The held connections.
#[derive(Debug, Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// A connection closed, or stopped serving a request (so it may give its slot up).
    changed: Notify,
}

impl Registry {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.conns().len()
    }

    fn insert(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        self.conns().insert(id, conn.clone());
        metrics::gauge!(m::HTTP_CONNECTIONS).increment(1.0);
        (id, conn)
    }

    fn remove(&self, id: u64) {
        if self.conns().remove(&id).is_some() {
            metrics::gauge!(m::HTTP_CONNECTIONS).decrement(1.0);
        }
        self.changed.notify_one();
    }

    /// True when one more connection may be accepted: below `max`, or some held connection is
    /// waiting for its client and not already being evicted.
    fn has_room(&self, max: usize) -> bool {
        let conns = self.conns();
        conns.len() < max
            || conns
                .values()
                .any(|c| !c.evicted.load(Ordering::Relaxed) && c.waiting_since().is_some())
    }

    /// Closes the connection that has waited longest for its client; false when every held
    /// connection is serving a request.
    fn evict_longest_waiting(&self) -> bool {
        let conns = self.conns();
        let victim = conns
            .values()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .filter_map(|c| c.waiting_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, c)| c.clone());
        drop(conns);
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Relaxed);
                c.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the registry, given back when its task ends (however it ends).
struct ConnSlot {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Marks a connection as serving a request until dropped (response produced, or the request
/// abandoned), then idle again.
struct Serving {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Serving {
    fn begin(conn: Arc<Conn>, registry: Arc<Registry>) -> Self {
        conn.set_phase(Phase::Serving);
        Serving { conn, registry }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.conn.set_phase(Phase::Idle(Instant::now()));
        self.registry.changed.notify_one();
    }
}

async fn run_connection(
    stream: TcpStream,
    app: axum::Router,
    limits: ServerLimits,
    conn: Arc<Conn>,
    slot: ConnSlot,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        conn: conn.clone(),
    });
    let registry = slot.registry.clone();
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let serving = Serving::begin(service_conn.clone(), registry.clone());
        let mut app = app.clone();
        let req = req.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
        async move {
            std::future::poll_fn(|cx| tower::Service::<Request<Body>>::poll_ready(&mut app, cx))
                .await?;
            let response = app.call(req).await;
            drop(serving);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut connection = pin!(connection);
    let mut draining = false;
    if *stop.borrow_and_update() {
        draining = true;
        connection.as_mut().graceful_shutdown();
    }
    let closed_by_us = loop {
        let deadline = conn.deadline(&limits);
        let bound = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                break None;
            }
            () = bound => {
                // The phase may have moved on while the timer ran: only a bound still in force
                // closes the connection.
                if let Some((at, reason)) = conn.deadline(&limits) {
                    if Instant::now() >= at {
                        break Some(reason);
                    }
                }
            }
            () = conn.wake.notified() => {
                if conn.evicted.load(Ordering::Relaxed) && conn.waiting_since().is_some() {
                    break Some(CloseReason::Evicted);
                }
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Some(reason) = closed_by_us {
        tracing::debug!(reason = reason.label(), "closing a connection");
        metrics::counter!(m::HTTP_CONNECTIONS_CLOSED, "reason" => reason.label()).increment(1);
    }
    // Dropping the connection closes the socket; dropping the slot frees its place.
    drop(connection);
    drop(slot);
}

/// The socket, noting each read in the connection's phase.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes (a total bound from
/// the end of the head, not reset by each chunk: a body trickled a byte at a time still ends).
struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Instant,
    /// Armed on the first read that has to wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            timeout,
            deadline: Instant::now() + timeout,
            timer: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// Completes on SIGINT or (on Unix) SIGTERM. If a handler cannot be installed, that signal is
/// ignored with a log line (the other still works).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Installs the process's tracing subscriber: JSON lines when `ASYNC_JOBS_LOG_FORMAT=json` (the
/// container images set it), human-readable text otherwise; filter from `RUST_LOG` (default
/// `info`). Logs go to stderr. A second call is a no-op.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("ASYNC_JOBS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _already_installed = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The address of a process's operations endpoints: `ASYNC_JOBS_HEALTH_ADDR` (default
/// `0.0.0.0:9090`; `off` disables them). `Err` names the variable.
pub fn ops_addr_from_env() -> Result<Option<std::net::SocketAddr>, jobs_core::ConfigError> {
    const VAR: &str = "ASYNC_JOBS_HEALTH_ADDR";
    match std::env::var(VAR) {
        Ok(v) if v.trim().eq_ignore_ascii_case("off") => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|_| {
            jobs_core::ConfigError::new(VAR, "host:port like 0.0.0.0:9090, or off", &v)
        }),
        Err(_) => Ok(Some(std::net::SocketAddr::from(([0, 0, 0, 0], 9090)))),
    }
}

/// Starts the operations endpoints in the background when `addr` is set, under the default
/// [`ServerLimits`]. Binding fails loudly (returned), serving errors are logged; the task ends
/// with the process.
pub async fn spawn_ops(
    addr: Option<std::net::SocketAddr>,
    service: jobs_core::JobService,
) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let state = crate::AppState::new(service, crate::AuthConfig::open())
        .with_metrics_handle(crate::metrics::prometheus_handle());
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving /healthz, /readyz and /metrics");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = serve(
            listener,
            crate::routes::ops_router(state),
            std::future::pending(),
        )
        .await
        {
            tracing::error!(error = %e, "operations endpoint stopped");
        }
    })))
}

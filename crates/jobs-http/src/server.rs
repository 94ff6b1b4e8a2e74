//! Serving a router on a socket (used by `async-jobs api` and `dev`, the operations endpoints of
//! every process, and tests), with graceful shutdown and the [`ServerLimits`] that keep slow or
//! silent clients from holding the server.
//!
//! A plain `axum::serve` waits for ever: a client that sends half a request head, or trickles a
//! body one byte at a time, keeps its connection (and a file descriptor) for good, and enough of
//! them starve everyone else. Here each connection is in one phase at a time, and each phase has
//! a bound:
//!
//! | phase | from | bound |
//! |---|---|---|
//! | idle | accept, or the moment the previous response was written out | [`ServerLimits::idle_timeout`], then closed |
//! | head | the first byte of a request | [`ServerLimits::header_timeout`] to complete the head, then closed |
//! | serving | the end of the head, through the handler | the body must arrive within [`ServerLimits::body_timeout`] of the head (else 408 `body_timeout`) |
//! | sending | the handler's response, until hyper has flushed it | closed when the socket takes no bytes for [`ServerLimits::body_timeout`] (each connection's send buffer is 256 KiB, so that is a client that stopped reading, or one reading under about 4 KiB/s) |
//!
//! At most [`ServerLimits::max_connections`] are held. At the cap a new connection replaces the
//! connection that has waited longest for its client — new or mid-head ones first, then idle
//! kept-alive ones, each only after half a second of waiting, so a queued client always gets time
//! to send its request — and when every held connection is serving, new connections wait in the
//! listen queue until one finishes. A connection takes a slot only once one is free (the cap
//! holds), and a held connection is replaced only for a newcomer that has actually arrived.
//!
//! On shutdown, connections not serving a request are closed at once; the others finish their
//! request for up to [`ServerLimits::shutdown_grace`], then are closed.
//!
//! Known bound: a partial request head that arrives in the same read as the request before it
//! (pipelining) is bounded by the idle timeout rather than the header timeout (the server cannot
//! tell where the first request ended); it stays replaceable at the cap like any idle connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
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
/// connections (and the cap).
#[derive(Debug, Clone)]
pub struct Server {
    limits: ServerLimits,
    registry: Arc<Registry>,
}

/// How long a connection keeps its slot before it may be replaced at the cap (from its accept,
/// or from the end of its last response): time to send a request, so that a queued client is
/// never dropped before it could speak, and a kept-alive connection is not closed just as its
/// client reuses it.
const EVICTION_GRACE: Duration = Duration::from_millis(500);

/// What the accept loop tells the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Finish the request in progress, then close; close at once if none is.
    Draining,
    /// The drain deadline passed: close now.
    Abort,
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

    /// Held connections serving a request now (reading its body, running its handler or
    /// sending its response); the rest are idle or receiving a request head.
    pub fn serving_connections(&self) -> usize {
        self.registry
            .conns()
            .values()
            .filter(|c| c.is_serving())
            .count()
    }

    /// Serves `app` on `listener` until `shutdown` completes; then stops accepting, closes the
    /// connections that are not serving a request, lets the others finish theirs for up to
    /// [`ServerLimits::shutdown_grace`], closes what is left, and returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        let mut shutdown = pin!(shutdown);
        let max = self.limits.max_connections;
        'accept: loop {
            // Wait until a slot is free or replaceable before accepting, so that while every slot
            // is taken by requests in progress new connections wait in the listen queue, not in
            // this process. Nothing is replaced before a newcomer has actually arrived.
            if !self.wait_for_room(max, Replace::No, &mut shutdown).await {
                break 'accept;
            }
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
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
            // The room seen before `accept` may be gone by now: this connection takes a slot
            // only once one is actually free, replacing a waiting connection if it must.
            if !self.wait_for_room(max, Replace::Yes, &mut shutdown).await {
                break 'accept;
            }
            // Small JSON responses: send them at once.
            let _ = stream.set_nodelay(true);
            // A bounded send buffer: the kernel then takes more of a response each time a
            // slow client has read a little, so "no bytes taken for the body timeout" means a
            // client that stopped reading, not a steady slow one behind a multi-MiB buffer.
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
            let (id, conn) = self.registry.insert();
            tokio::spawn(run_connection(
                stream,
                peer,
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
        // Each connection of this loop holds a receiver: the channel closes when the last of
        // them has ended (connections of another loop on the same `Server` do not count).
        drop(stop_rx);
        let _ = stop_tx.send(Stop::Draining);
        let drained = tokio::time::timeout(self.limits.shutdown_grace, stop_tx.closed()).await;
        if drained.is_err() {
            tracing::warn!(
                open = stop_tx.receiver_count(),
                "closing connections still serving after the shutdown grace"
            );
            let _ = stop_tx.send(Stop::Abort);
            stop_tx.closed().await;
        }
        Ok(())
    }

    /// With [`Replace::Yes`], waits until fewer than `max` connections are held, replacing the
    /// longest-waiting replaceable connection when there is one; with [`Replace::No`], waits
    /// until a slot is free, being freed, or replaceable now. False when `shutdown` completed
    /// first.
    async fn wait_for_room<F: Future<Output = ()>>(
        &self,
        max: usize,
        replace: Replace,
        shutdown: &mut Pin<&mut F>,
    ) -> bool {
        loop {
            let mut changed = self.registry.changed.subscribe();
            let (held, closing) = self.registry.counts();
            if held < max {
                return true;
            }
            let next_candidate = if held - closing < max {
                // A slot is being freed already.
                if replace == Replace::No {
                    return true;
                }
                None
            } else {
                // Replace one connection per missing slot, never more: a victim leaves the
                // count only when its task has closed it.
                match self.registry.evict(Instant::now(), replace) {
                    Eviction::Done if replace == Replace::No => return true,
                    Eviction::Done | Eviction::NoCandidate => None,
                    Eviction::NotBefore(at) => Some(at),
                }
            };
            let wake = async {
                match next_candidate {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = changed.changed() => {}
                () = wake => {}
                () = shutdown.as_mut() => return false,
            }
        }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted at this instant; nothing read yet.
    Fresh(Instant),
    /// No request in progress since this instant (the end of the last response).
    Idle(Instant),
    /// A request's first byte arrived at this instant; its head is not complete.
    Head(Instant),
    /// A request is being served: its body read, its handler run. `next_head` is when bytes
    /// of a following (pipelined) request began to arrive, once the body was complete.
    Serving {
        body_done: bool,
        next_head: Option<Instant>,
    },
    /// The response is being produced and sent since `since`; `handed_over` once its body has
    /// been given to the connection in full (what remains is hyper's write buffer, drained at
    /// the client's pace: the connection is idle once it is flushed).
    Sending {
        since: Instant,
        handed_over: bool,
        next_head: Option<Instant>,
    },
    /// Chosen to be replaced at the cap: its task closes it.
    Closing,
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy)]
enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    SendStalled,
    Evicted,
    Shutdown,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::SendStalled => "send_stalled",
            CloseReason::Evicted => "evicted",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// One held connection's shared state.
#[derive(Debug)]
struct Conn {
    phase: Mutex<Phase>,
    /// When the connection was accepted: the origin of `last_write_us`.
    opened: Instant,
    /// When the client last took response bytes (µs after `opened`). A response keeps being
    /// written after its body has been handed over (the socket drains it at the client's pace),
    /// so "idle" and "stalled" count from the later of this and the phase's start.
    last_write_us: AtomicU64,
    /// Wakes the connection's task to re-read its phase.
    wake: Notify,
    /// The registry's change signal (a connection that stops serving may give its slot up).
    changed: Arc<watch::Sender<u64>>,
}

impl Conn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn phase(&self) -> Phase {
        *self.lock()
    }

    /// Changes the phase with `f` and wakes the task if it changed.
    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.lock();
        let next = f(*phase);
        let changed = next != *phase;
        *phase = next;
        drop(phase);
        if changed {
            self.wake.notify_one();
        }
    }

    /// Bytes arrived.
    fn on_read(&self) {
        let now = Instant::now();
        self.update(|phase| match phase {
            Phase::Fresh(_) | Phase::Idle(_) => Phase::Head(now),
            Phase::Serving {
                body_done: true,
                next_head: None,
            } => Phase::Serving {
                body_done: true,
                next_head: Some(now),
            },
            Phase::Sending {
                since,
                handed_over,
                next_head: None,
            } => Phase::Sending {
                since,
                handed_over,
                next_head: Some(now),
            },
            other => other,
        });
    }

    /// The client took bytes of a response.
    fn on_write(&self) {
        let us = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_write_us.store(us, Ordering::Relaxed);
    }

    /// hyper flushed the socket: its write buffer is empty. A response handed over in full has
    /// now been written out; the connection waits for its client again.
    fn on_flush(&self) {
        let mut phase = self.lock();
        if let Phase::Sending {
            handed_over: true,
            next_head,
            ..
        } = *phase
        {
            *phase = next_head.map_or(Phase::Idle(Instant::now()), Phase::Head);
            drop(phase);
            self.wake.notify_one();
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The later of `at` and the last time the client took response bytes.
    fn or_last_write(&self, at: Instant) -> Instant {
        let written =
            self.opened + Duration::from_micros(self.last_write_us.load(Ordering::Relaxed));
        at.max(written)
    }

    /// `(class, since)` when a connection in `phase` may be replaced at the cap: class 0 for
    /// new or mid-head connections, 1 for idle ones; `since` when it began waiting (an idle one
    /// still draining its last response into the socket counts as busy until the last write).
    fn replaceable_since(&self, phase: Phase) -> Option<(u8, Instant)> {
        match phase {
            Phase::Fresh(at) | Phase::Head(at) => Some((0, at)),
            Phase::Idle(at) => Some((1, self.or_last_write(at))),
            _ => None,
        }
    }

    fn is_serving(&self) -> bool {
        matches!(self.phase(), Phase::Serving { .. } | Phase::Sending { .. })
    }

    /// When the current phase's bound runs out, and why.
    fn deadline(&self, limits: &ServerLimits) -> Option<(Instant, CloseReason)> {
        match self.phase() {
            Phase::Fresh(at) | Phase::Idle(at) => Some((
                self.or_last_write(at) + limits.idle_timeout,
                CloseReason::IdleTimeout,
            )),
            Phase::Head(at) => Some((at + limits.header_timeout, CloseReason::HeaderTimeout)),
            Phase::Sending { since, .. } => Some((
                self.or_last_write(since) + limits.body_timeout,
                CloseReason::SendStalled,
            )),
            Phase::Serving { .. } | Phase::Closing => None,
        }
    }
}

/// The held connections.
#[derive(Debug)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Bumped when a connection closes or stops serving (so it may give its slot up).
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            conns: Mutex::default(),
            next_id: AtomicU64::new(0),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// Whether [`Registry::evict`] may close the connection it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// Only look: is there a connection that could be replaced now?
    No,
    /// Replace it.
    Yes,
}

/// The send buffer of each connection (see where it is set).
const SEND_BUFFER: usize = 256 * 1024;

/// The outcome of [`Registry::evict`].
enum Eviction {
    /// A connection was chosen (and, with [`Replace::Yes`], told to close; it leaves once its
    /// task has closed it).
    Done,
    /// None may be replaced yet; one may at this instant.
    NotBefore(Instant),
    /// Every held connection is serving a request.
    NoCandidate,
}

impl Registry {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.conns().len()
    }

    /// Connections held, and how many of them are being closed.
    fn counts(&self) -> (usize, usize) {
        let conns = self.conns();
        let closing = conns
            .values()
            .filter(|c| matches!(c.phase(), Phase::Closing))
            .count();
        (conns.len(), closing)
    }

    fn notify_changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn insert(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let conn = Arc::new(Conn {
            phase: Mutex::new(Phase::Fresh(now)),
            opened: now,
            last_write_us: AtomicU64::new(0),
            wake: Notify::new(),
            changed: self.changed.clone(),
        });
        self.conns().insert(id, conn.clone());
        metrics::gauge!(m::HTTP_CONNECTIONS).increment(1.0);
        (id, conn)
    }

    fn remove(&self, id: u64) {
        if self.conns().remove(&id).is_some() {
            metrics::gauge!(m::HTTP_CONNECTIONS).decrement(1.0);
        }
        self.notify_changed();
    }

    /// Chooses the connection to replace: one waiting for its client for at least
    /// [`EVICTION_GRACE`] — first those that have not completed a request since they last
    /// waited (new, or mid-head), then idle kept-alive ones — the longest-waiting first. The
    /// choice and the phase change happen under the connection's lock, so a connection that
    /// has just begun a request is never chosen.
    fn evict(&self, now: Instant, replace: Replace) -> Eviction {
        let conns = self.conns();
        let mut best: Option<((u8, Instant), &Arc<Conn>)> = None;
        let mut soonest: Option<Instant> = None;
        for c in conns.values() {
            let Some((class, since)) = c.replaceable_since(c.phase()) else {
                continue;
            };
            let eligible_at = since + EVICTION_GRACE;
            if eligible_at > now {
                soonest = Some(soonest.map_or(eligible_at, |s| s.min(eligible_at)));
                continue;
            }
            if best.as_ref().is_none_or(|(key, _)| (class, since) < *key) {
                best = Some(((class, since), c));
            }
        }
        let Some((_, victim)) = best else {
            return soonest.map_or(Eviction::NoCandidate, Eviction::NotBefore);
        };
        if replace == Replace::No {
            return Eviction::Done;
        }
        let mut phase = victim.lock();
        // Still waiting, and for long enough (re-read under the lock every phase change takes).
        let still = victim
            .replaceable_since(*phase)
            .is_some_and(|(_, since)| since + EVICTION_GRACE <= now);
        if still {
            *phase = Phase::Closing;
            drop(phase);
            victim.wake.notify_one();
            Eviction::Done
        } else {
            Eviction::NotBefore(now)
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

/// Marks a connection as serving a request until dropped: from the end of the request head,
/// through the handler, until the response has been handed to the socket (or abandoned). Then
/// the connection is idle, or receiving the next request's head if one began meanwhile.
struct Serving {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Serving {
    fn begin(conn: Arc<Conn>, registry: Arc<Registry>, body_done: bool) -> Self {
        conn.update(|phase| match phase {
            Phase::Closing => Phase::Closing,
            _ => Phase::Serving {
                body_done,
                next_head: None,
            },
        });
        Serving { conn, registry }
    }

    /// The request body has been read to its end.
    fn body_done(&self) {
        self.conn.update(|phase| match phase {
            Phase::Serving { next_head, .. } => Phase::Serving {
                body_done: true,
                next_head,
            },
            other => other,
        });
    }

    /// The handler produced the response; sending begins.
    fn sending(&self) {
        self.conn.update(|phase| match phase {
            Phase::Serving { next_head, .. } => Phase::Sending {
                since: Instant::now(),
                handed_over: false,
                next_head,
            },
            other => other,
        });
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let now = Instant::now();
        self.conn.update(|phase| match phase {
            Phase::Closing => Phase::Closing,
            // The body is with the connection: idle once it has been written out (on_flush).
            Phase::Sending {
                since, next_head, ..
            } => Phase::Sending {
                since,
                handed_over: true,
                next_head,
            },
            // The request was abandoned without a response.
            Phase::Serving { next_head, .. } => next_head.map_or(Phase::Idle(now), Phase::Head),
            _ => Phase::Idle(now),
        });
        self.registry.notify_changed();
    }
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    limits: ServerLimits,
    conn: Arc<Conn>,
    slot: ConnSlot,
    mut stop: watch::Receiver<Stop>,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        conn: conn.clone(),
    });
    let registry = slot.registry.clone();
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let body_done = http_body::Body::is_end_stream(req.body());
        let serving = Arc::new(Serving::begin(
            service_conn.clone(),
            registry.clone(),
            body_done,
        ));
        let mut app = app.clone();
        let body_serving = serving.clone();
        let req =
            req.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout, body_serving)));
        async move {
            std::future::poll_fn(|cx| tower::Service::<Request<Body>>::poll_ready(&mut app, cx))
                .await?;
            let response = app.call(req).await?;
            serving.sending();
            // The connection serves this request until the response body has been handed
            // to the socket (the guard goes with the body).
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(GuardedBody {
                    inner: body,
                    serving: Some(serving),
                })
            }))
        }
    });
    // Boxed so that dropping it below really closes the socket before the slot is given back.
    let mut connection =
        Box::pin(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
    let mut draining = false;
    let closed_by_us = loop {
        let stop_now = *stop.borrow_and_update();
        if stop_now == Stop::Abort {
            break Some(CloseReason::Shutdown);
        }
        if stop_now == Stop::Draining {
            if !draining {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            // Not serving a request: nothing to finish.
            if !conn.is_serving() && !matches!(conn.phase(), Phase::Closing) {
                break Some(CloseReason::Shutdown);
            }
        }
        if matches!(conn.phase(), Phase::Closing) {
            break Some(CloseReason::Evicted);
        }
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
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
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
            () = conn.wake.notified() => {}
            changed = stop.changed() => {
                // The accept loop is gone (its task was dropped): nothing will drain us.
                if changed.is_err() {
                    break Some(CloseReason::Shutdown);
                }
            }
        }
    };
    if let Some(reason) = closed_by_us {
        tracing::debug!(%peer, reason = reason.label(), "closing a connection");
        metrics::counter!(m::HTTP_CONNECTIONS_CLOSED, "reason" => reason.label()).increment(1);
    }
    // Dropping the connection closes the socket; dropping the slot frees its place.
    drop(connection);
    drop(slot);
}

/// The socket, noting each read and each write in the connection's phase.
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

impl Watched {
    fn wrote(&self, result: &Poll<std::io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.conn.on_write();
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        // hyper flushes the socket only once its own write buffer is empty.
        if matches!(result, Poll::Ready(Ok(()))) {
            this.conn.on_flush();
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes (a total bound from
/// the end of the head, not reset by each chunk: a body trickled a byte at a time still ends),
/// and tells the connection when it has been read to its end.
struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Instant,
    /// Armed on the first read that has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    serving: Arc<Serving>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration, serving: Arc<Serving>) -> Self {
        DeadlineBody {
            inner,
            timeout,
            deadline: Instant::now() + timeout,
            timer: None,
            serving,
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
            if frame.is_none() || http_body::Body::is_end_stream(&this.inner) {
                this.serving.body_done();
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                metrics::counter!(m::HTTP_CONNECTIONS_CLOSED, "reason" => "body_timeout")
                    .increment(1);
                Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
            }
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

/// A response body that keeps its connection serving until it has been sent to its end (or
/// dropped).
struct GuardedBody {
    inner: Body,
    serving: Option<Arc<Serving>>,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.serving = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

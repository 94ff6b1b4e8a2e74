//! Abuse suite (issue 13): real sockets against the real server loop (`jobs_http::server`), as an
//! attacker without credentials would use them — slow headers, slow bodies, connection floods
//! within and beyond the cap, method and path cardinality, scrapes of `/metrics` under load.
//! Beside it, `hostile.rs` sends malformed input through the router.
//!
//! Each case runs its own server on 127.0.0.1:0 with limits scaled down to fractions of a second,
//! and measures the bound it relies on with a generous margin (these are bounds, not speeds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobs_core::clock::SystemClock;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::memory::MemoryStore;
use jobs_core::{JobService, PlatformConfig, StoreError};
use jobs_http::server::Server;
use jobs_http::{AppState, AuthConfig, ServerLimits};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Counts `counts()` calls (the `/metrics` job gauges' store read).
#[derive(Debug, Default)]
struct CountReads(AtomicU32);

#[async_trait]
impl Interceptor for CountReads {
    async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        if op == StoreOp::Counts {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

struct Running {
    addr: SocketAddr,
    server: Server,
    counts: Arc<InterceptedStore<CountReads>>,
    service: JobService,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The API router over an in-memory store, open auth (the attacker needs no credentials for
/// anything here: limits apply before authentication), served under `limits`.
async fn start(limits: ServerLimits) -> Running {
    let store = Arc::new(InterceptedStore::new(
        Arc::new(MemoryStore::new(Arc::new(SystemClock))),
        CountReads::default(),
    ));
    let service = JobService::new(store.clone(), Arc::new(PlatformConfig::default()));
    let app = jobs_http::router(AppState::new(service.clone(), AuthConfig::open()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(limits);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server.clone();
    let served = tokio::spawn(async move {
        serving
            .serve(listener, app, async move {
                let _ = stopped.await;
            })
            .await
    });
    Running {
        addr,
        server,
        counts: store,
        service,
        stop,
        served,
    }
}

fn limits(header_ms: u64, body_ms: u64, idle_ms: u64, max_connections: usize) -> ServerLimits {
    ServerLimits {
        header_timeout: Duration::from_millis(header_ms),
        body_timeout: Duration::from_millis(body_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
        shutdown_grace: Duration::from_millis(500),
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 response with a `Content-Length` body.
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    Raw {
        status,
        headers: head.to_ascii_lowercase(),
        body: buf[head_end..head_end + length].to_vec(),
    }
}

/// Waits until the server closes `stream` (EOF or reset); returns how long that took, or `None`
/// after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(started + within, stream.read(&mut sink)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection that has sent part of a request head and stops.
async fn slow_header(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    s
}

/// A connection that has sent a request head and the first byte of a 400-byte body, and stops
/// (serving a request: its body is being read).
async fn slow_body(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{",
    )
    .await
    .unwrap();
    s
}

/// Enqueues `n` jobs of `tenant` whose payloads are `bytes` long.
async fn enqueue_large(api: &Running, tenant: &str, n: usize, bytes: usize) {
    let payload = serde_json::json!({ "blob": "x".repeat(bytes) });
    for i in 0..n {
        api.service
            .enqueue(
                serde_json::from_value(serde_json::json!({
                    "tenant_id": tenant, "use_case": "notifications", "type": "send_email",
                    "payload": payload, "idempotency_key": format!("{tenant}{i}"),
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
}

/// One prompt request on a fresh connection: status and how long it took.
async fn prompt_get(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    (r.status, started.elapsed())
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_partial_header_is_closed_within_the_header_timeout() {
    let api = start(limits(300, 30_000, 30_000, 64)).await;
    let mut s = slow_header(api.addr).await;
    let took = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("a partial request head held its connection past the header timeout");
    assert!(
        took >= Duration::from_millis(250),
        "closed before the header timeout: {took:?}"
    );
    // Trickling the head byte by byte does not restart the clock.
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    trickle.await;
    let closed = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a trickled head kept its connection");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idle_connection_outlives_the_header_timeout_and_closes_at_the_idle_timeout() {
    let api = start(limits(200, 30_000, 1_500, 64)).await;
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut s).await.status, 200);
    // Idle for longer than the header timeout: a kept-alive connection is not a slow header.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut s).await.status, 200);
    let took = closed_within(&mut s, Duration::from_secs(6))
        .await
        .expect("an idle connection was held past the idle timeout");
    assert!(
        took >= Duration::from_millis(1_300),
        "closed before the idle timeout: {took:?}"
    );
}

#[tokio::test]
async fn a_trickled_body_is_answered_408_at_the_body_timeout() {
    let api = start(limits(10_000, 500, 30_000, 64)).await;
    let s = slow_body(api.addr).await;
    let started = Instant::now();
    let (mut read, mut write) = s.into_split();
    let trickle = tokio::spawn(async move {
        // One byte every 100 ms: each read is prompt, the whole body never is.
        for _ in 0..100 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        outcome.is_ok(),
        "a trickled body held its connection: {:?}",
        String::from_utf8_lossy(&buf)
    );
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn slow_clients_within_the_cap_do_not_delay_prompt_ones() {
    let api = start(limits(30_000, 30_000, 30_000, 64)).await;
    let mut slow = Vec::new();
    for _ in 0..60 {
        slow.push(slow_header(api.addr).await);
    }
    eventually("60 slow connections held", Duration::from_secs(5), || {
        api.server.open_connections() >= 60
    })
    .await;
    for _ in 0..20 {
        let (status, took) = prompt_get(api.addr, "/healthz").await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    drop(slow);
}

#[tokio::test]
async fn beyond_the_cap_prompt_clients_replace_slow_ones_and_the_cap_holds() {
    let cap = 16;
    let api = start(limits(30_000, 30_000, 30_000, cap)).await;
    let mut slow = Vec::new();
    for _ in 0..3 * cap {
        slow.push(slow_header(api.addr).await);
    }
    // Every slow connection gets accepted (each replacing an older one); the count never
    // settles above the cap.
    eventually("the flood accepted", Duration::from_secs(5), || {
        api.server.open_connections() == cap
    })
    .await;
    // A prompt client queued behind the flood waits for slow connections to pass their half
    // second of grace (a few rounds of the cap), never for a header timeout (30 s here).
    for _ in 0..10 {
        let (status, took) = prompt_get(api.addr, "/healthz").await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(api.server.open_connections() <= cap);
    }
    // The oldest slow connection was the first replaced.
    assert!(
        closed_within(&mut slow[0], Duration::from_secs(2))
            .await
            .is_some(),
        "the longest-waiting connection is still held"
    );
    eventually("back at the cap", Duration::from_secs(5), || {
        api.server.open_connections() <= cap
    })
    .await;
}

#[tokio::test]
async fn when_every_held_connection_is_serving_new_ones_wait_for_a_free_slot() {
    // Two connections send a body slowly (serving a request, so not replaceable); a third waits
    // in the listen queue until a body timeout frees a slot.
    let api = start(limits(10_000, 1_500, 30_000, 2)).await;
    let mut writers = Vec::new();
    for _ in 0..2 {
        writers.push(slow_body(api.addr).await);
    }
    eventually("both bodies being read", Duration::from_secs(5), || {
        api.server.serving_connections() == 2
    })
    .await;
    let (status, took) = prompt_get(api.addr, "/healthz").await;
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(6),
        "the third connection should wait for a body timeout to free a slot: {took:?}"
    );
    drop(writers);
}

#[tokio::test]
async fn made_up_methods_and_paths_over_the_wire_add_no_metric_series() {
    let api = start(limits(5_000, 5_000, 5_000, 64)).await;
    let mut marks = Vec::new();
    for i in 0..300 {
        let method = format!("ZQ{i}X{}", "M".repeat(i % 40));
        let path = format!("/zq-path-{i}/{}", "p".repeat(i % 50));
        marks.push(format!("ZQ{i}X"));
        marks.push(format!("zq-path-{i}/"));
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let r = read_response(&mut s).await;
        assert!(matches!(r.status, 404 | 405 | 400), "{}", r.status);
    }
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body);
    for mark in &marks {
        assert!(!text.contains(mark.as_str()), "{mark} became a label");
    }
    // Every series of the request metrics has a known method label.
    for line in text
        .lines()
        .filter(|l| l.starts_with("async_jobs_http_requests_total{"))
    {
        let method = line
            .split("method=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other"].contains(&method),
            "{line}"
        );
    }
    assert!(
        r.body.len() < 256 * 1024,
        "/metrics is {} bytes",
        r.body.len()
    );
}

#[tokio::test]
async fn unauthenticated_scrapes_under_load_read_the_store_at_most_once_per_interval() {
    let api = start(limits(5_000, 5_000, 5_000, 512)).await;
    let started = Instant::now();
    let scrapes: Vec<_> = (0..200)
        .map(|_| {
            let addr = api.addr;
            tokio::spawn(async move { prompt_get(addr, "/metrics").await })
        })
        .collect();
    for s in scrapes {
        assert_eq!(s.await.unwrap().0, 200);
    }
    let reads = api.counts.interceptor().0.load(Ordering::SeqCst);
    // The default interval is 5 s: one read, or two if the burst straddled an interval.
    let intervals = 1 + (started.elapsed().as_secs() / 5) as u32;
    assert!(
        reads >= 1 && reads <= intervals,
        "{reads} store reads for 200 scrapes in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn error_bodies_are_json_with_nosniff_over_the_wire() {
    let api = start(limits(5_000, 5_000, 5_000, 64)).await;
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    s.write_all(b"GET /jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 400);
    assert!(r.headers.contains("x-content-type-options: nosniff"));
    assert!(r.headers.contains("content-type: application/json"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "invalid_id");
}

#[tokio::test]
async fn clients_queued_behind_a_full_server_are_all_answered() {
    // Every slot held by a request in progress; a burst of prompt clients waits in the listen
    // queue and is answered once slots free, none dropped unanswered.
    let api = start(limits(10_000, 1_000, 30_000, 2)).await;
    let mut writers = Vec::new();
    for _ in 0..2 {
        writers.push(slow_body(api.addr).await);
    }
    eventually("both bodies being read", Duration::from_secs(5), || {
        api.server.serving_connections() == 2
    })
    .await;
    let burst: Vec<_> = (0..30)
        .map(|_| {
            let addr = api.addr;
            tokio::spawn(async move { prompt_get(addr, "/healthz").await })
        })
        .collect();
    for client in burst {
        assert_eq!(client.await.unwrap().0, 200);
    }
    drop(writers);
}

#[tokio::test]
async fn a_burst_beyond_the_cap_over_idle_connections_is_all_answered() {
    let api = start(limits(10_000, 10_000, 30_000, 8)).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.status, 200);
        idle.push(s);
    }
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let addr = api.addr;
            tokio::spawn(async move { prompt_get(addr, "/healthz").await })
        })
        .collect();
    for client in burst {
        assert_eq!(client.await.unwrap().0, 200);
    }
    assert!(api.server.open_connections() <= 8);
}

#[tokio::test]
async fn a_slowly_read_response_is_neither_cut_at_the_idle_timeout_nor_replaced() {
    // 30 jobs of 200 KB: a page of about 6 MB, more than the socket buffers hold, read slowly
    // through a small receive buffer while silent connections press on a cap of 4.
    let api = start(limits(10_000, 10_000, 500, 4)).await;
    enqueue_large(&api, "t", 30, 200_000).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(api.addr).await.unwrap();
    s.write_all(b"GET /jobs?limit=500&include_payload=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(api.addr).await.unwrap());
    }
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    assert!(length > 3_000_000, "{length}");
    assert_eq!(got.len() - head_end, length, "the response was cut short");
    drop(silent);
}

#[tokio::test]
async fn shutdown_closes_waiting_connections_at_once_and_bounds_requests_in_progress() {
    let api = start(limits(30_000, 30_000, 30_000, 64)).await;
    let _slow_head = slow_header(api.addr).await;
    let _body = slow_body(api.addr).await;
    eventually("the body being read", Duration::from_secs(5), || {
        api.server.serving_connections() == 1
    })
    .await;
    let started = Instant::now();
    api.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), api.served)
        .await
        .expect("shutdown waited past its grace")
        .unwrap()
        .unwrap();
    // The grace is 500 ms; the body timeout (30 s) and header timeout (30 s) did not count.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(api.server.open_connections(), 0);
}

#[tokio::test]
async fn a_worst_case_list_page_stays_within_its_byte_budget_over_the_wire() {
    // The review's case: 250 KB payloads, `limit=500`. Without payloads a page is small; with
    // them it stops at the 4 MiB budget and hands back a cursor.
    let api = start(limits(10_000, 10_000, 30_000, 64)).await;
    enqueue_large(&api, "fat", 40, 250_000).await;
    let page = |path: &'static str| async move {
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let r = read_response(&mut s).await;
        assert_eq!(r.status, 200);
        (
            r.body.len(),
            serde_json::from_slice::<Value>(&r.body).unwrap(),
        )
    };
    let (bytes, v) = page("/jobs?limit=500").await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 40);
    assert!(v["jobs"][0].get("payload").is_none());
    assert!(
        bytes < 64 * 1024,
        "a page without payloads is {bytes} bytes"
    );
    let (bytes, v) = page("/jobs?limit=500&include_payload=true").await;
    let listed = v["jobs"].as_array().unwrap().len();
    assert!((1..40).contains(&listed), "{listed}");
    assert!(v["next_cursor"].is_string());
    assert!(
        bytes <= 4 * 1024 * 1024 + 64 * 1024,
        "a page with payloads is {bytes} bytes"
    );
}

#[tokio::test]
async fn connections_at_the_cap_are_kept_until_a_newcomer_needs_a_slot() {
    // Exactly the cap of kept-alive connections, and nobody else: none is replaced (only a
    // connection that has actually arrived replaces one), each lasts to the idle timeout.
    let api = start(limits(10_000, 10_000, 2_000, 4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.status, 200);
        held.push(s);
    }
    // Well past the half second after which an idle connection may be replaced.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for s in &mut held {
        assert!(
            closed_within(s, Duration::from_millis(100)).await.is_none(),
            "a connection at the cap was closed with no newcomer"
        );
    }
    assert_eq!(api.server.open_connections(), 4);
    // A newcomer replaces one of them.
    let (status, _) = prompt_get(api.addr, "/healthz").await;
    assert_eq!(status, 200);
}

#!/usr/bin/env python3
"""Measures the API process under the abuse of issue 13 (figures for RELIABILITY.md).

Starts `async-jobs api` (in-memory store, or Postgres when ASYNC_JOBS_DB_DSN is set) with a file
limit of 1,024 (the common container default) and, against its real socket:

1. slow heads: 1,100 connections that each send part of a request head and stop; /healthz probed
   from fresh connections meanwhile (latency), connections held, process RSS and open files;
2. slow bodies: 600 requests (more than the 512 cap) whose body trickles a byte a second; the
   same probes (they wait in the listen queue for a body timeout to free a slot, none dropped);
3. made-up methods: 1,000 requests with long invented methods; RSS and /metrics size after.

Usage: scripts/abuse-measure.py [path/to/async-jobs]   (default target/debug/async-jobs)
Prints one JSON object. Standard library only.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/async-jobs"
PORT = int(os.environ.get("ABUSE_PORT", "18480"))
ADDR = ("127.0.0.1", PORT)


def limit_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def request(method, path, timeout=10.0):
    """One request on a fresh connection: (status, body bytes, seconds); status 0 on failure."""
    started = time.monotonic()
    try:
        with socket.create_connection(ADDR, timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1]) if head else 0
        return status, body, time.monotonic() - started
    except OSError:
        return 0, b"", time.monotonic() - started


def probe(n=20, timeout=10.0):
    took = []
    failures = 0
    for _ in range(n):
        status, _, t = request("GET", "/healthz", timeout=timeout)
        if status != 200:
            failures += 1
        took.append(t)
        time.sleep(0.05)
    took.sort()
    return {
        "probes": n,
        "failed": failures,
        "p50_ms": round(took[len(took) // 2] * 1000, 1),
        "max_ms": round(took[-1] * 1000, 1),
    }


def metric(name):
    _, body, _ = request("GET", "/metrics")
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def hold(sockets_payload, count):
    held = []
    refused = 0
    for _ in range(count):
        try:
            s = socket.create_connection(ADDR, timeout=2)
            s.sendall(sockets_payload)
            held.append(s)
        except OSError:
            refused += 1
    return held, refused


def main():
    env = dict(os.environ)
    env.setdefault("ASYNC_JOBS_API_ADDR", f"127.0.0.1:{PORT}")
    env.setdefault("ASYNC_JOBS_AUTH", "none")
    env.setdefault("ASYNC_JOBS_STORE", "memory")
    env.setdefault("RUST_LOG", "warn")
    proc = subprocess.Popen([BIN, "api"], env=env, preexec_fn=limit_files,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {"binary": BIN, "file_limit": 1024}
    try:
        for _ in range(200):
            if request("GET", "/healthz", timeout=1)[0] == 200:
                break
            time.sleep(0.1)
        out["baseline"] = {"rss_kib": rss_kib(proc.pid), **probe()}

        # 1. Slow heads.
        held, refused = hold(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", 1100)
        time.sleep(1)
        out["slow_heads"] = {
            "opened": len(held), "refused_by_os": refused,
            "server_connections": metric("async_jobs_http_connections"),
            "server_open_files": open_files(proc.pid),
            "rss_kib": rss_kib(proc.pid), **probe(),
        }
        # After the header timeout (10 s by default) the server has shed them.
        time.sleep(11)
        out["slow_heads"]["server_connections_after_header_timeout"] = metric(
            "async_jobs_http_connections")
        for s in held:
            s.close()

        # 2. Slow bodies, more than the cap (a byte per second for 5 s per connection; a body
        # needs credentials unless ASYNC_JOBS_AUTH=none, as here).
        held, refused = hold(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{", 600)
        for _ in range(5):
            for s in held:
                try:
                    s.send(b" ")
                except OSError:
                    pass
            time.sleep(1)
        out["slow_bodies"] = {
            "opened": len(held), "refused_by_os": refused,
            "server_open_files": open_files(proc.pid),
            "rss_kib": rss_kib(proc.pid),
        }
        # Every slot serves a slow body: a probe waits in the listen queue until the 30 s body
        # timeout frees slots, then is answered (none dropped).
        out["slow_bodies"]["probes_while_full"] = probe(3, timeout=60.0)
        out["slow_bodies"]["probes_after"] = probe(10)
        for s in held:
            s.close()

        # 3. Made-up methods.
        for i in range(1000):
            request(f"X{i}{'M' * 200}", "/jobs")
        status, body, took = request("GET", "/metrics")
        out["made_up_methods"] = {
            "requests": 1000, "rss_kib": rss_kib(proc.pid),
            "metrics_bytes": len(body), "metrics_ms": round(took * 1000, 1),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The API contract check: Schemathesis (an OpenAPI fuzzer, from PyPI) against the BUILT
# `async-jobs dev`, with every check and every phase (examples, coverage, fuzzing, stateful).
# Any failure — an answer the document does not describe, a body that does not match its schema,
# a request the schema calls invalid that the API accepts (or the reverse), a 5xx — fails the run.
#
#   scripts/schemathesis.sh            # needs target/debug/async-jobs (cargo build --bins)
#
# Settings (environment, all optional):
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 100)
#   SCHEMATHESIS_SEED          the generator's seed (default 20261202: the same cases every run)
#   SCHEMATHESIS_TIMEOUT       seconds the whole run may take before it is stopped (default 600)
#   SCHEMATHESIS_BIN             the binary to test (default $CARGO_TARGET_DIR or target, /debug/async-jobs)
#
# State: the virtualenv in .venv/schemathesis, the server log and Schemathesis' reports in
# target/schemathesis/ (both git-ignored). The server runs on the in-memory store and transport,
# on a free loopback port, with an operator token, and is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv/schemathesis"
STATE="$ROOT/target/schemathesis"
# Pinned exactly: a newer Schemathesis can add checks or change what it generates.
SCHEMATHESIS_VERSION="4.32.5"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
SEED="${SCHEMATHESIS_SEED:-20261202}"
TIMEOUT="${SCHEMATHESIS_TIMEOUT:-600}"
BIN="${SCHEMATHESIS_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/async-jobs}"

log() { echo "schemathesis.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- Schemathesis, in its own virtualenv ------------------------------------------------------
installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true
}
if [[ "$(installed_version)" != "$SCHEMATHESIS_VERSION" ]]; then
    command -v python3 >/dev/null || die "python3 is required"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating virtualenv $VENV"
        python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    log "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
        "schemathesis==$SCHEMATHESIS_VERSION" >&2 || die "pip install schemathesis failed"
fi
PY="$VENV/bin/python"

# --- The server ---------------------------------------------------------------------------------
[[ -x "$BIN" ]] || die "$BIN is missing: build it first (cargo build --workspace --bins --all-features)"
mkdir -p "$STATE"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TOKEN="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
BASE="http://127.0.0.1:$PORT"
SERVER_LOG="$STATE/server.log"

# Only the settings below: nothing from the caller's environment (a DSN, queue URLs, quotas)
# changes what is tested.
unset_vars=()
while IFS='=' read -r name _; do
    [[ "$name" == ASYNC_JOBS_* ]] && unset_vars+=(-u "$name")
done < <(env)
env "${unset_vars[@]}" \
    ASYNC_JOBS_API_ADDR="127.0.0.1:$PORT" \
    ASYNC_JOBS_ENQUEUE_AUTH_TOKEN="$TOKEN" \
    ASYNC_JOBS_LOG_FORMAT=text \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$BIN" dev >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
stop_server() {
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT TERM

log "waiting for $BASE/readyz"
"$PY" - "$BASE/readyz" "$SERVER_PID" <<'PY' || { cat "$SERVER_LOG" >&2; die "the server did not become ready"; }
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the server exited")
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit("timed out")
PY

# --- The run --------------------------------------------------------------------------------------
log "schemathesis $SCHEMATHESIS_VERSION: all checks, all phases, $MAX_EXAMPLES examples, seed $SEED"
started=$SECONDS
status=0
# The hooks bend positive cases to the rules JSON Schema cannot state (see the file); no check
# is excluded.
# From target/schemathesis, so its cache (.schemathesis/) stays out of the work tree.
cd "$STATE"
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$ROOT/scripts" \
timeout --signal=INT "$TIMEOUT" "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --workers 1 \
    --header "Authorization: Bearer $TOKEN" \
    --no-color \
    --report junit,ndjson --report-dir "$STATE/report" \
    || status=$?
log "finished in $((SECONDS - started)) s with exit code $status (server log: $SERVER_LOG)"
kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; die "the server died during the run"; }
exit "$status"

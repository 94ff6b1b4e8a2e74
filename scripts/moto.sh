#!/usr/bin/env bash
# The SQS emulator for tests: moto's server from PyPI, on a free loopback port.
#
#   eval "$(scripts/moto.sh start)"   # install if needed, start if not running, export the settings
#   scripts/moto.sh env               # print the export lines of the running server
#   scripts/moto.sh status            # exit 0 when running and answering
#   scripts/moto.sh stop              # stop it
#
# Only the `export …` lines go to stdout (so `eval` takes them); progress goes to stderr.
# State: the virtualenv in .venv/moto, the pid, port and log in target/moto/ (both under the repo
# root, both git-ignored). Starting twice reuses the running server; stopping twice is fine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv/moto"
STATE="$ROOT/target/moto"
PID_FILE="$STATE/moto.pid"
PORT_FILE="$STATE/moto.port"
LOG_FILE="$STATE/moto.log"
# moto 5.x speaks the AWS JSON 1.0 protocol that aws-sdk-sqs uses (see docs/sqs.md).
MOTO_REQUIREMENT="${MOTO_REQUIREMENT:-moto[server]>=5,<6}"
START_TIMEOUT_SECS="${MOTO_START_TIMEOUT_SECS:-60}"

log() { echo "moto.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

install() {
    if [[ -x "$VENV/bin/moto_server" ]]; then
        return
    fi
    command -v python3 >/dev/null || die "python3 is required"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating virtualenv $VENV"
        python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    log "installing '$MOTO_REQUIREMENT' into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "$MOTO_REQUIREMENT" >&2 \
        || die "pip install '$MOTO_REQUIREMENT' failed"
    [[ -x "$VENV/bin/moto_server" ]] || die "moto_server missing after install"
}

# Prints the pid of the running server, or nothing.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

# Exit 0 when an HTTP server answers on the port (any status counts as an answer).
answers() {
    local port="$1"
    "$VENV/bin/python" - "$port" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2)
except urllib.error.HTTPError:
    pass  # an HTTP error is still an answer
PY
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

print_env() {
    local port="$1"
    echo "export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$port"
    echo "export AWS_ACCESS_KEY_ID=test"
    echo "export AWS_SECRET_ACCESS_KEY=test"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_EC2_METADATA_DISABLED=true"
}

# Starts one server on a fresh port; returns 1 if it died before answering (e.g. lost the port).
try_start() {
    local port pid waited=0
    port="$(free_port)"
    log "starting moto_server on 127.0.0.1:$port (log: $LOG_FILE)"
    # setsid + closed stdin/stdout: the server outlives this script and `$(…)` does not wait for it.
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$port" >"$PORT_FILE"
    # Poll every 0.2 s up to the timeout.
    while (( waited < START_TIMEOUT_SECS * 5 )); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "moto_server (pid $pid) exited before answering"
            rm -f "$PID_FILE" "$PORT_FILE"
            return 1
        fi
        if answers "$port"; then
            log "moto_server is up (pid $pid, port $port)"
            return 0
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$PID_FILE" "$PORT_FILE"
    tail -n 20 "$LOG_FILE" >&2 || true
    die "moto_server did not answer on port $port within ${START_TIMEOUT_SECS}s"
}

start() {
    mkdir -p "$STATE"
    install
    local pid port
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        port="$(cat "$PORT_FILE" 2>/dev/null || true)"
        if [[ -n "$port" ]] && answers "$port"; then
            log "moto_server already running (pid $pid, port $port)"
            print_env "$port"
            return
        fi
        log "pid $pid does not answer; restarting"
        stop
    fi
    local attempt
    for attempt in 1 2 3; do
        if try_start; then
            print_env "$(cat "$PORT_FILE")"
            return
        fi
        log "attempt $attempt failed"
    done
    tail -n 20 "$LOG_FILE" >&2 || true
    die "moto_server would not start (see $LOG_FILE)"
}

stop() {
    local pid waited=0
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$PID_FILE" "$PORT_FILE"
        log "not running"
        return
    fi
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && (( waited < 50 )); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
    log "stopped (pid $pid)"
}

status() {
    local pid port
    pid="$(running_pid)"
    port="$(cat "$PORT_FILE" 2>/dev/null || true)"
    if [[ -n "$pid" && -n "$port" ]] && answers "$port"; then
        log "running (pid $pid, port $port)"
        return 0
    fi
    log "not running"
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env)
        status >/dev/null 2>&1 || die "not running; run: eval \"\$(scripts/moto.sh start)\""
        print_env "$(cat "$PORT_FILE")"
        ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac

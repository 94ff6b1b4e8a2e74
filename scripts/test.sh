#!/usr/bin/env bash
# Runs every check and test of the workspace against real services:
#   formatting, clippy (-D warnings), examples, unit + conformance + integration + end-to-end
#   tests (nextest), the API contract check (scripts/schemathesis.sh: Schemathesis, every check
#   and phase, against the built `async-jobs dev`), and doc tests.
# It provisions what is missing: starts PostgreSQL (installing it from Debian's packages only if
# absent), creates a fresh test database, and installs + starts moto's SQS server in a local
# virtualenv, and installs Debian's chromium and chromium-driver for the dashboard's browser test.
# A service that cannot be started fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# --- PostgreSQL -------------------------------------------------------------------------------
PGHOST_ADDR=127.0.0.1
PGPORT_NUM=5432
pg_up() { pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1 && ! ls /etc/postgresql >/dev/null 2>&1; then
  log "installing PostgreSQL from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client
fi
if ! pg_up; then
  log "starting PostgreSQL"
  for v in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  done
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
fi
pg_up || { echo "PostgreSQL is not reachable on $PGHOST_ADDR:$PGPORT_NUM" >&2; exit 1; }

TEST_DB=async_jobs_test
export ASYNC_JOBS_TEST_DATABASE_URL="postgres://postgres@$PGHOST_ADDR:$PGPORT_NUM/$TEST_DB"
log "recreating database $TEST_DB"
psql -q -h "$PGHOST_ADDR" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS $TEST_DB WITH (FORCE)" -c "CREATE DATABASE $TEST_DB"

# --- SQS emulator (moto) ----------------------------------------------------------------------
log "starting the SQS emulator"
eval "$(scripts/moto.sh start)"
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT

# --- Headless browser (tests/dashboard.rs) ---------------------------------------------------
# Debian's chromium and its WebDriver, which the dashboard's browser test drives. Installed only
# when absent; under CI=true the test fails without them instead of skipping.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  log "installing chromium and chromium-driver from Debian's packages"
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi

# --- Rust checks and tests --------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "building binaries and examples"
cargo build --workspace --bins --examples --all-features
log "runtimes and router without default features (no adapters; tests/crate_deps.rs)"
cargo check -p jobs-worker -p jobs-scheduler -p jobs-http --no-default-features --lib --examples
log "tests"
# Everything but the Postgres-restart fault test, which restarts the shared cluster and so runs
# alone afterwards.
cargo nextest run --workspace --all-features --no-fail-fast -E 'not binary(fault_postgres_restart)'
log "API contract: Schemathesis against async-jobs dev"
scripts/schemathesis.sh
log "fault suite: Postgres restart (alone)"
cargo nextest run -p async-jobs --all-features --test fault_postgres_restart
log "doc tests"
cargo test --workspace --all-features --doc

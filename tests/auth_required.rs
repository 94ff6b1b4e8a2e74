//! The real `async-jobs` binary refuses to serve the API without credentials unless told to
//! (`ASYNC_JOBS_AUTH=none`), `async-jobs dev` runs open on a loopback address only, and
//! `--print-config` reports the authentication actually in force (issue 13, item 4).
//!
//! Needs only the binary (`cargo build --bin async-jobs --all-features`): in-memory store, no
//! Postgres, no SQS. Every child runs with a cleared environment plus what the test sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Proc;

const TOKEN_VAR: &str = "ASYNC_JOBS_ENQUEUE_AUTH_TOKEN";
const KEYS_VAR: &str = "ASYNC_JOBS_API_KEYS";
const MODE_VAR: &str = "ASYNC_JOBS_AUTH";
/// How long a refusing process may take to exit.
const REFUSAL: Duration = Duration::from_secs(10);
/// How long a starting process may take to listen.
const START: Duration = Duration::from_secs(30);

/// What a scheduler or worker needs to start: a Postgres store (not contacted by
/// `--print-config`) and a queue.
const BACKGROUND_ENV: &[(&str, &str)] = &[
    ("ASYNC_JOBS_STORE", ""),
    (
        "ASYNC_JOBS_DB_DSN",
        "postgres://app@127.0.0.1:1/db?sslmode=disable",
    ),
    (
        "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
        "http://127.0.0.1:1/000000000000/notifications",
    ),
    // An emulator's queue URL carries no region.
    ("AWS_REGION", "us-east-1"),
];

/// `async-jobs <args>` with only `env` (and no inherited `ASYNC_JOBS_*` setting).
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(common::binary("async-jobs"));
    cmd.args(args)
        .env_clear()
        .env("RUST_LOG", "info")
        .env("ASYNC_JOBS_HEALTH_ADDR", "off")
        // The in-memory store, asked for explicitly (only `dev` defaults to it).
        .env("ASYNC_JOBS_STORE", "memory")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// A log file for a long-running child, under `target/<profile>/e2e-logs/`.
fn log_file(name: &str) -> PathBuf {
    let dir = common::binary("async-jobs")
        .parent()
        .unwrap()
        .join("e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("auth-{name}-{}.log", std::process::id()))
}

/// Runs `async-jobs <args>` that must exit by itself within [`REFUSAL`]; returns its output.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::output_within(
        command(args, env),
        REFUSAL,
        &format!("async-jobs {}", args.join(" ")),
    )
}

/// Asserts that `async-jobs <args>` exits non-zero with the one-line "no credentials" error.
fn assert_refuses(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_to_exit(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "`async-jobs {}` with {env:?} started: {stderr}",
        args.join(" ")
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("async-jobs: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    for needle in [TOKEN_VAR, KEYS_VAR, "ASYNC_JOBS_AUTH=none"] {
        assert!(line.contains(needle), "{needle} missing from {line}");
    }
    assert!(
        out.stdout.is_empty(),
        "nothing is printed on a refusal: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    line.to_owned()
}

/// The JSON `async-jobs <command> --print-config` prints under `env`.
fn print_config(command_args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut args = command_args.to_vec();
    args.push("--print-config");
    let out = run_to_exit(&args, env);
    assert!(
        out.status.success(),
        "{args:?} with {env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `async-jobs <args>` and waits until it listens on `port`.
fn start(name: &str, args: &[&str], env: &[(&str, &str)], port: u16) -> (Proc, PathBuf) {
    let log = log_file(name);
    let file = std::fs::File::create(&log).unwrap();
    let child = command(args, env)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut proc = Proc {
        name: name.to_owned(),
        child,
    };
    let begun = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(code) = proc.child.try_wait().unwrap() {
            panic!(
                "{name} exited ({code}) instead of listening: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(begun.elapsed() < START, "{name} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, log)
}

async fn get_jobs(port: u16, bearer: Option<&str>) -> reqwest::StatusCode {
    let mut req =
        reqwest::Client::new().get(format!("http://127.0.0.1:{port}/jobs?tenant_id=acme"));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status()
}

#[test]
fn api_without_credentials_refuses_to_start() {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let addr_env = ("ASYNC_JOBS_API_ADDR", addr.as_str());
    // Nothing set, a blank token, no keys, or both blank: each is "no credential".
    for env in [
        vec![addr_env],
        vec![addr_env, (TOKEN_VAR, "   ")],
        vec![addr_env, (KEYS_VAR, "{}")],
        vec![addr_env, (TOKEN_VAR, " "), (KEYS_VAR, "{}")],
        vec![addr_env, (MODE_VAR, "required")],
    ] {
        let line = assert_refuses(&["api"], &env);
        assert!(line.contains(&addr), "{line}");
        // --print-config fails exactly like the command would.
        assert_eq!(assert_refuses(&["api", "--print-config"], &env), line);
    }
    // A bad mode names the variable; `none` with a credential is a contradiction.
    for env in [
        vec![addr_env, (MODE_VAR, "off")],
        vec![addr_env, (MODE_VAR, "none"), (TOKEN_VAR, "s3cret")],
    ] {
        let out = run_to_exit(&["api"], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?}: {stderr}");
        assert!(stderr.contains("invalid ASYNC_JOBS_AUTH"), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[test]
fn dev_off_loopback_without_credentials_refuses_to_start() {
    let env = [("ASYNC_JOBS_API_ADDR", "0.0.0.0:1")];
    let line = assert_refuses(&["dev"], &env);
    assert!(line.contains("loopback"), "{line}");
    assert_eq!(assert_refuses(&["dev", "--print-config"], &env), line);
    assert_refuses(&["dev", "--addr", "0.0.0.0:1"], &[]);
}

#[test]
fn print_config_reports_the_authentication_in_force() {
    let required = print_config(
        &["api"],
        &[
            (TOKEN_VAR, "s3cret"),
            (
                KEYS_VAR,
                r#"{"0000000000000000000000000000000000000000000000000000000000000001": "acme"}"#,
            ),
        ],
    );
    assert_eq!(
        required["auth"],
        serde_json::json!({"mode": "required", "operator_token": true, "tenant_keys": 1})
    );
    assert!(!required.to_string().contains("s3cret"));

    let none = print_config(&["api"], &[(MODE_VAR, "none")]);
    assert_eq!(none["auth"]["mode"], "none", "{none}");
    assert!(none["auth"]["warning"].is_string(), "{none}");

    let dev = print_config(&["dev", "--addr", "127.0.0.1:8080"], &[]);
    assert_eq!(dev["auth"]["mode"], "open (dev, loopback only)", "{dev}");
    assert_eq!(dev["api_addr"], "127.0.0.1:8080");
    let dev = print_config(&["dev"], &[(TOKEN_VAR, "s3cret")]);
    assert_eq!(dev["auth"]["mode"], "required", "{dev}");

    // Processes that do not serve the API have no auth section.
    let scheduler = print_config(&["scheduler"], BACKGROUND_ENV);
    assert!(scheduler.get("auth").is_none(), "{scheduler}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_with_auth_none_starts_open_and_answers() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let (proc, log) = start(
        "api-none",
        &["api"],
        &[("ASYNC_JOBS_API_ADDR", &addr), (MODE_VAR, "none")],
        port,
    );
    assert_eq!(get_jobs(port, None).await, reqwest::StatusCode::OK);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("ASYNC_JOBS_AUTH=none") && text.contains("no credentials"),
        "the open API is announced: {text}"
    );
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_with_a_token_requires_it() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let (proc, _log) = start(
        "api-token",
        &["api"],
        &[("ASYNC_JOBS_API_ADDR", &addr), (TOKEN_VAR, "  s3cret  ")],
        port,
    );
    assert_eq!(
        get_jobs(port, None).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    // The configured token was trimmed, so the presented one matches.
    assert_eq!(
        get_jobs(port, Some("s3cret")).await,
        reqwest::StatusCode::OK
    );
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_on_loopback_runs_open_and_says_so() {
    let port = common::free_port();
    let (proc, log) = start(
        "dev-loopback",
        &["dev", "--addr", &format!("127.0.0.1:{port}")],
        &[],
        port,
    );
    assert_eq!(get_jobs(port, None).await, reqwest::StatusCode::OK);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("open, with no credentials, loopback only"),
        "dev announces the open API: {text}"
    );
    drop(proc);
}

/// A variable that is not UTF-8 anywhere in the environment is no reason to panic; one of ours
/// that is not UTF-8 is a setting error naming it.
#[cfg(unix)]
#[test]
fn settings_that_are_not_utf8_never_panic() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = command(&["--print-config", "api"], &[(TOKEN_VAR, "s3cret")])
        .env("SOME_OTHER_VARIABLE", bad)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command(&["--print-config", "api"], &[(TOKEN_VAR, "s3cret")])
        .env("ASYNC_JOBS_HTTP_MAX_CONNECTIONS", bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("ASYNC_JOBS_HTTP_MAX_CONNECTIONS"),
        "{stderr}"
    );
}

/// Only `dev` runs on the in-memory store without being asked to: `api`, `scheduler` and
/// `worker` without `ASYNC_JOBS_DB_DSN` refuse to start with one line (issue 15, item 2).
#[test]
fn processes_other_than_dev_refuse_to_start_without_a_store() {
    let no_store = [("ASYNC_JOBS_STORE", ""), (TOKEN_VAR, "s3cret")];
    for args in [
        &["api"][..],
        &["scheduler"],
        &["worker"],
        &["--print-config", "api"],
        &["--print-config", "worker"],
    ] {
        let out = run_to_exit(args, &no_store);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "`{}` started: {stderr}",
            args.join(" ")
        );
        let lines: Vec<_> = stderr
            .lines()
            .filter(|l| l.contains("ASYNC_JOBS_DB_DSN"))
            .collect();
        assert_eq!(lines.len(), 1, "`{}`: {stderr}", args.join(" "));
        assert!(lines[0].contains("ASYNC_JOBS_STORE=memory"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Memory together with a DSN, or an unknown store, is a setting error naming the variable.
    for (store, dsn) in [("memory", "postgres://x@127.0.0.1:1/db"), ("mysql", "")] {
        let out = run_to_exit(
            &["--print-config", "api"],
            &[
                ("ASYNC_JOBS_STORE", store),
                ("ASYNC_JOBS_DB_DSN", dsn),
                (TOKEN_VAR, "s3cret"),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store}: {stderr}");
        assert!(
            stderr.contains("invalid ASYNC_JOBS_STORE"),
            "{store}: {stderr}"
        );
    }
    // `dev` defaults to memory, and says so.
    let out = run_to_exit(&["--print-config", "dev"], &no_store);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["store"]["kind"], "memory");
}

/// `--print-config` says whether spans are exported (the standard OpenTelemetry variables), and
/// an unusable endpoint stops the process with one line naming the variable.
#[test]
fn print_config_reports_span_export_and_a_bad_endpoint_is_refused() {
    let off = print_config(&["worker"], BACKGROUND_ENV);
    assert_eq!(
        off["traces"],
        serde_json::json!({"otlp_export": false, "endpoint": null, "traces_url": null, "service_name": "async-jobs-worker"}),
        "{off}"
    );
    let on = print_config(
        &["api"],
        &[
            (MODE_VAR, "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_SERVICE_NAME", "jobs-api-prod"),
        ],
    );
    assert_eq!(
        on["traces"],
        serde_json::json!({"otlp_export": true, "endpoint": "http://127.0.0.1:9", "traces_url": "http://127.0.0.1:9/v1/traces", "service_name": "jobs-api-prod"}),
        "{on}"
    );
    let disabled = print_config(
        &["api"],
        &[
            (MODE_VAR, "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    );
    assert_eq!(disabled["traces"]["otlp_export"], false, "{disabled}");

    let out = run_to_exit(
        &["api"],
        &[
            (MODE_VAR, "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("async-jobs: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{line}");
}

/// `--print-config` never prints a database password, in any form the DSN can carry it.
#[test]
fn print_config_hides_every_database_password() {
    for dsn in [
        "postgres://app:s3cret@127.0.0.1:1/db",
        "postgres://app@127.0.0.1:1/db?password=s3cret&sslmode=disable",
        "host=127.0.0.1 port=1 user=app password=s3cret dbname=db",
        "host=127.0.0.1 port=1 user=app password='a s3cret' dbname=db",
    ] {
        let config = print_config(
            &["scheduler"],
            &[
                ("ASYNC_JOBS_STORE", "postgres"),
                ("ASYNC_JOBS_DB_DSN", dsn),
                (TOKEN_VAR, "tok"),
                BACKGROUND_ENV[2],
                BACKGROUND_ENV[3],
            ],
        );
        let text = config.to_string();
        assert!(!text.contains("s3cret"), "{dsn}: {text}");
        assert!(text.contains("***"), "{dsn}: {text}");
    }
}

//! The operator CLI (`async-jobs jobs …`, issue 18 item 5) against a real API: `async-jobs dev`
//! with an operator token and a tenant key, its worker running the sample handlers. Every exit
//! status a script relies on is checked, and what each command prints.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Proc;
use serde_json::{json, Value};

const OPERATOR: &str = "operator-token";
/// The tenant key of `globex` (its SHA-256 is what the API is configured with).
const GLOBEX_KEY: &str = "globex-key";
const GLOBEX_KEY_SHA256: &str = "f2a455b59b858a04c51108416af2042203cb6ac35fa4141fba4148bc856e78d4";

struct Api {
    url: String,
    _dev: Proc,
}

fn start_api() -> Api {
    let port = common::free_port();
    let child = Command::new(common::binary("async-jobs"))
        .arg("dev")
        .env_clear()
        .env("ASYNC_JOBS_API_ADDR", format!("127.0.0.1:{port}"))
        .env("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN", OPERATOR)
        .env(
            "ASYNC_JOBS_API_KEYS",
            format!(r#"{{"{GLOBEX_KEY_SHA256}": "globex"}}"#),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dev = Proc {
        name: "dev".into(),
        child,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dev did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Api {
        url: format!("http://127.0.0.1:{port}"),
        _dev: dev,
    }
}

/// `async-jobs jobs <args>` against `url` with `token`, the environment otherwise empty.
fn jobs(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::binary("async-jobs"));
    cmd.arg("jobs")
        .args(args)
        .env_clear()
        .env("ASYNC_JOBS_API_URL", url);
    if let Some(token) = token {
        cmd.env("ASYNC_JOBS_API_TOKEN", token);
    }
    common::output_within(cmd, Duration::from_secs(30), &format!("jobs {args:?}"))
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn json(out: &Output) -> Value {
    assert_eq!(
        code(out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one error line a failing command prints.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("async-jobs: "), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", stdout(out));
    stderr.into_owned()
}

fn wait_status(url: &str, id: &str, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let job = json(&jobs(url, Some(OPERATOR), &["get", id, "--output", "json"]));
        if job["status"] == status {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{id} never reached {status}: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn enqueue(url: &str, token: &str, tenant: &str, payload: &str) -> String {
    let job = json(&jobs(
        url,
        Some(token),
        &[
            "enqueue",
            "--tenant",
            tenant,
            "--use-case",
            "notifications",
            "--type",
            "send_email",
            "--payload",
            payload,
            "--max-attempts",
            "1",
            "--output",
            "json",
        ],
    ));
    assert_eq!(job["status"], "pending", "{job}");
    job["id"].as_str().unwrap().to_owned()
}

#[test]
fn an_operator_finds_a_dead_job_retries_it_and_scripts_can_rely_on_exit_codes() {
    let api = start_api();
    let url = api.url.as_str();
    let failing = r#"{"to": "a@b.c", "subject": "s", "body": "b", "fail": "permanent"}"#;
    let fine = r#"{"to": "a@b.c", "subject": "s", "body": "b", "sleep_ms": 0}"#;
    let dead = enqueue(url, OPERATOR, "acme", failing);
    let ok = enqueue(url, OPERATOR, "acme", fine);
    let theirs = enqueue(url, GLOBEX_KEY, "globex", fine);
    let job = wait_status(url, &dead, "dead");
    assert!(
        job["last_error"].as_str().unwrap().contains("permanent"),
        "{job}"
    );
    wait_status(url, &ok, "succeeded");

    // List, as a table and as JSON.
    let table = stdout(&jobs(url, Some(OPERATOR), &["list", "--status", "dead"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "ID", "TENANT", "USE CASE", "TYPE", "STATUS", "ATTEMPTS", "DEADLINE",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains(&dead) && table.contains("dead"), "{table}");
    assert!(!table.contains(&ok), "the status filter holds: {table}");
    let all = json(&jobs(
        url,
        Some(OPERATOR),
        &["list", "--all", "--limit", "1", "--output", "json"],
    ));
    let ids: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "--all follows the cursor page by page: {all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    let first = json(&jobs(
        url,
        Some(OPERATOR),
        &["list", "--limit", "1", "--output", "json"],
    ));
    assert!(
        first["next_cursor"].is_string(),
        "one page leaves a cursor: {first}"
    );

    // Get, as fields.
    let shown = stdout(&jobs(url, Some(OPERATOR), &["get", &dead]));
    for field in [
        "status      dead",
        // A dead job has no predicted start.
        "predicted   -",
        "at risk     -",
        "last error",
        "payload",
        "\"fail\": \"permanent\"",
    ] {
        assert!(shown.contains(field), "{field}: {shown}");
    }

    // Retry: back to pending at once (and the worker takes it again).
    let retried = json(&jobs(
        url,
        Some(OPERATOR),
        &["retry", &dead, "--output", "json"],
    ));
    assert_eq!(retried["status"], "pending", "{retried}");
    wait_status(url, &dead, "dead");

    // Refused by the API: a succeeded job cannot be cancelled (5).
    let refused = jobs(url, Some(OPERATOR), &["cancel", &ok]);
    assert_eq!(code(&refused), Some(5), "{}", error_line(&refused));
    // Not found (3), for a missing job and for another tenant's job seen with a tenant key.
    let missing = jobs(
        url,
        Some(OPERATOR),
        &["get", "0193a1b2-0000-7000-8000-000000000000"],
    );
    assert_eq!(code(&missing), Some(3), "{}", error_line(&missing));
    let hidden = jobs(url, Some(GLOBEX_KEY), &["get", &dead]);
    assert_eq!(code(&hidden), Some(3), "{}", error_line(&hidden));
    let own = json(&jobs(url, Some(GLOBEX_KEY), &["list", "--output", "json"]));
    let seen: Vec<&str> = own["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        seen,
        [theirs.as_str()],
        "a tenant key lists its own jobs only"
    );
    // Credentials refused (4), missing or wrong.
    for token in [None, Some("wrong")] {
        let denied = jobs(url, token, &["list"]);
        assert_eq!(code(&denied), Some(4), "{}", error_line(&denied));
    }
    // Usage (2): a malformed id never reaches the API.
    let usage = jobs(url, Some(OPERATOR), &["get", "not-a-uuid"]);
    assert_eq!(code(&usage), Some(2));
    // A URL that does not lead to the API (a wrong prefix) is a usage error, not "no such job".
    let wrong = jobs(&format!("{url}/prefix"), Some(OPERATOR), &["get", &dead]);
    assert_eq!(code(&wrong), Some(2), "{}", error_line(&wrong));
    // Unreachable (1).
    let port = common::free_port();
    let down = jobs(
        &format!("http://127.0.0.1:{port}"),
        Some(OPERATOR),
        &["list"],
    );
    assert_eq!(code(&down), Some(1), "{}", error_line(&down));

    // Bulk retry of every dead acme job, one per call: the CLI follows the cursor to the end.
    let more: Vec<String> = (0..2)
        .map(|_| enqueue(url, OPERATOR, "acme", failing))
        .collect();
    for id in more.iter().chain([&dead]) {
        wait_status(url, id, "dead");
    }
    let bulk = json(&jobs(
        url,
        Some(OPERATOR),
        &[
            "bulk-retry",
            "--tenant",
            "acme",
            "--status",
            "dead",
            "--limit",
            "1",
            "--output",
            "json",
        ],
    ));
    assert_eq!(
        (bulk["matched"].clone(), bulk["changed"].clone()),
        (json!(3), json!(3)),
        "{bulk}"
    );
    assert!(bulk["calls"].as_u64().unwrap() >= 3, "{bulk}");
    // A tenant key's bulk cancel cannot reach another tenant's jobs.
    let cancel = json(&jobs(
        url,
        Some(GLOBEX_KEY),
        &["bulk-cancel", "--tenant", "acme", "--output", "json"],
    ));
    assert_eq!(cancel["matched"], 0, "{cancel}");

    // --print-config shows where the commands call, never the token.
    let config = json(&jobs(url, Some(OPERATOR), &["list", "--print-config"]));
    assert_eq!(config["api_url"], url);
    assert_eq!(config["token"], true);
    assert!(!config.to_string().contains(OPERATOR));
}

#[test]
fn enqueue_sets_expiry_at_the_deadline_when_asked() {
    let api = start_api();
    let job = json(&jobs(
        &api.url,
        Some(OPERATOR),
        &[
            "enqueue",
            "--tenant",
            "acme",
            "--use-case",
            "notifications",
            "--type",
            "send_email",
            "--payload",
            r#"{"to": "a@b.c", "subject": "s", "body": "b", "sleep_ms": 0}"#,
            "--tolerance-seconds",
            "3600",
            "--expire-at-deadline",
            "true",
            "--output",
            "json",
        ],
    ));
    assert_eq!(job["expire_at_deadline"], true, "{job}");
    wait_status(&api.url, job["id"].as_str().unwrap(), "succeeded");
}

//! Without a test database URL and without a Docker engine, a Postgres test fails at once with
//! the one line that says what to do, not with connection errors. Runs this binary again as the
//! "test without a database" and reads what it printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "JOBS_TESTDB_NO_DATABASE_CHILD";

/// The stand-in for any Postgres test, run only as the child below.
#[test]
fn child_asks_for_the_database() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let url = jobs_testdb::database_url();
    panic!("expected no database, got {url}");
}

#[test]
fn without_url_or_docker_a_test_fails_in_one_line() {
    let home = std::env::temp_dir().join(format!("jobs-testdb-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_asks_for_the_database", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove(jobs_testdb::URL_VAR)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("RUST_BACKTRACE")
        .env("HOME", &home)
        // A socket that is not there: no engine, whatever this machine has.
        .env(
            "DOCKER_HOST",
            format!("unix://{}/docker.sock", home.display()),
        )
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&home);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let said: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains(jobs_testdb::URL_VAR))
        .collect();
    assert_eq!(said.len(), 1, "{stdout}\n{stderr}");
    assert!(said[0].starts_with(jobs_testdb::HOW_TO), "{}", said[0]);
    // No connection attempt was made: nothing about refused or failed connections.
    let all = format!("{stdout}{stderr}").to_lowercase();
    assert!(
        !all.contains("connection refused") && !all.contains("error connecting"),
        "{all}"
    );
}

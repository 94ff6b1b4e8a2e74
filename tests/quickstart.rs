//! Runs the README's quick-start curl lines, exactly as printed (only the port changes), against
//! the real `async-jobs dev` binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn quickstart_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("<!-- quickstart:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- quickstart:end -->").next())
        .expect("README has a quick-start block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_readme_quick_start_works_as_printed() {
    let lines = quickstart_lines();
    assert_eq!(lines.len(), 3, "enqueue, watch, list: {lines:?}");
    assert!(lines.iter().all(|l| l.contains("localhost:8080")));

    let port = common::free_port();
    let mut dev = Command::new(common::binary("async-jobs"))
        .arg("dev")
        .env("ASYNC_JOBS_API_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("ASYNC_JOBS_DB_DSN")
        .env("ASYNC_JOBS_HEALTH_ADDR", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = scopeguard(&mut dev);
    let at = |l: &str| l.replace("localhost:8080", &format!("127.0.0.1:{port}"));
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "async-jobs dev did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // 1: enqueue (the line sets ID); 2: watch until it succeeds; 3: list.
    let id = sh(&format!("{}\necho \"$ID\"", at(&lines[0])));
    let id = id.trim();
    assert_eq!(id.len(), 36, "the first line extracts a job id: {id:?}");
    let watch = format!("ID={id}\n{}", at(&lines[1]));
    let start = Instant::now();
    let job = loop {
        let out = sh(&watch);
        if out.contains(r#""status":"succeeded""#) {
            break out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never succeeded: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(job.contains(r#""attempts":1"#), "{job}");
    let list = sh(&at(&lines[2]));
    assert!(list.contains(id), "the list shows the job: {list}");
    drop(guard);
}

/// Kills the child when dropped, even if an assertion fails.
fn scopeguard(child: &mut std::process::Child) -> impl Drop + '_ {
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Kill(child)
}

//! The library crates depend downward only (ARCHITECTURE.md, "Code map"): the runtimes and the
//! router compile no database driver and no AWS SDK — with or without default features — and
//! the scheduler and worker runtimes no HTTP server either; the process wiring (adapters, span
//! export, the sample handlers) comes in only through the root package's `app`. `cargo tree`
//! proves it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

/// The packages a crate's normal dependencies resolve to, with or without its default features.
fn tree(package: &str, defaults: bool) -> BTreeSet<String> {
    let mut args = vec![
        "tree",
        "--offline",
        "--locked",
        "-e",
        "normal",
        "--prefix",
        "none",
    ];
    if !defaults {
        args.push("--no-default-features");
    }
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .args(["-p", package])
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_none(package: &str, crates: &BTreeSet<String>, forbidden: &[&str]) {
    let found: Vec<&String> = crates
        .iter()
        .filter(|c| forbidden.iter().any(|f| c.starts_with(f)))
        .collect();
    assert!(found.is_empty(), "{package} depends on {found:?}");
}

const DRIVERS_AND_SDK: &[&str] = &[
    "tokio-postgres",
    "deadpool",
    "aws-sdk-",
    "aws-config",
    "postgres-",
];

/// What only a process needs: span export and the demo handlers.
const PROCESS_ONLY: &[&str] = &[
    "opentelemetry_sdk",
    "opentelemetry-otlp",
    "jobs-samples",
    "clap",
];

#[test]
fn the_router_needs_no_database_driver_or_aws_sdk() {
    for defaults in [false, true] {
        let crates = tree("jobs-http", defaults);
        assert!(crates.contains("axum"), "the tree was read: {crates:?}");
        assert_none("jobs-http", &crates, DRIVERS_AND_SDK);
        assert_none("jobs-http", &crates, PROCESS_ONLY);
        assert_none("jobs-http", &crates, &["jobs-postgres", "jobs-sqs"]);
    }
}

#[test]
fn the_runtimes_need_only_the_core() {
    for package in ["jobs-worker", "jobs-scheduler"] {
        for defaults in [false, true] {
            let crates = tree(package, defaults);
            assert!(
                crates.contains("jobs-core"),
                "the tree was read: {crates:?}"
            );
            assert_none(package, &crates, DRIVERS_AND_SDK);
            assert_none(package, &crates, PROCESS_ONLY);
            assert_none(
                package,
                &crates,
                &["axum", "hyper", "jobs-http", "jobs-postgres", "jobs-sqs"],
            );
        }
    }
}

#[test]
fn the_process_wiring_comes_in_through_the_root_package_only() {
    // The checks above could pass on a tree that failed to list anything: the root package's
    // defaults (its `app`) must bring the adapters and the process's own needs in.
    let crates = tree("async-jobs", true);
    for needed in [
        "tokio-postgres",
        "aws-sdk-sqs",
        "axum",
        "jobs-http",
        "jobs-samples",
        "opentelemetry_sdk",
    ] {
        assert!(
            crates.contains(needed),
            "async-jobs with defaults lacks {needed}"
        );
    }
    // Without them, the umbrella is the core alone.
    let bare = tree("async-jobs", false);
    assert!(bare.contains("jobs-core"), "the tree was read: {bare:?}");
    assert_none(
        "async-jobs without default features",
        &bare,
        DRIVERS_AND_SDK,
    );
    assert_none(
        "async-jobs without default features",
        &bare,
        &["axum", "jobs-http", "jobs-samples", "opentelemetry_sdk"],
    );
}

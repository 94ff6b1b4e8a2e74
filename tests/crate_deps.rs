//! The library crates depend downward only (ARCHITECTURE.md, "Crate layering"): without their
//! default `app` feature, the runtimes and the router compile no database driver and no AWS SDK,
//! and the scheduler and worker runtimes no HTTP server either. `cargo tree` proves it.
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
    assert!(
        found.is_empty(),
        "{package} without default features depends on {found:?}"
    );
}

const DRIVERS_AND_SDK: &[&str] = &[
    "tokio-postgres",
    "deadpool",
    "aws-sdk-",
    "aws-config",
    "postgres-",
];

#[test]
fn the_router_needs_no_database_driver_or_aws_sdk() {
    let crates = tree("jobs-http", false);
    assert!(crates.contains("axum"), "the tree was read: {crates:?}");
    assert_none("jobs-http", &crates, DRIVERS_AND_SDK);
    assert_none("jobs-http", &crates, &["jobs-postgres", "jobs-sqs"]);
}

#[test]
fn the_runtimes_need_only_the_core() {
    for package in ["jobs-worker", "jobs-scheduler"] {
        let crates = tree(package, false);
        assert!(
            crates.contains("jobs-core"),
            "the tree was read: {crates:?}"
        );
        assert_none(package, &crates, DRIVERS_AND_SDK);
        assert_none(
            package,
            &crates,
            &["axum", "hyper", "jobs-http", "jobs-postgres", "jobs-sqs"],
        );
    }
}

#[test]
fn with_defaults_the_process_wiring_is_there() {
    // The check above could pass on a tree that failed to list anything: the default features
    // must bring the adapters back.
    let crates = tree("jobs-worker", true);
    for needed in ["tokio-postgres", "aws-sdk-sqs", "axum", "jobs-http"] {
        assert!(
            crates.contains(needed),
            "jobs-worker with defaults lacks {needed}"
        );
    }
}

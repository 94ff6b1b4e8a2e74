//! `.env.example` lists every setting the code reads, and nothing it does not (issue 15, item 7).
//! Settings are found as `ASYNC_JOBS_*` names in the library and binary sources; the per-use-case
//! families (`ASYNC_JOBS_SQS_QUEUE_<USE_CASE>`, `ASYNC_JOBS_<USE_CASE>_MAX_CONCURRENT`,
//! `ASYNC_JOBS_<USE_CASE>_DEFAULT_DELAY_TOLERANCE_SECONDS`) are covered by their examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `ASYNC_JOBS_…` name in `text` (a name ending in `_` is a prefix, not a setting).
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ASYNC_JOBS_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if !name.ends_with('_') {
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// A name of a per-use-case family.
fn per_use_case(name: &str) -> bool {
    name.starts_with("ASYNC_JOBS_SQS_QUEUE_")
        || name.ends_with("_MAX_CONCURRENT")
        || name.ends_with("_DEFAULT_DELAY_TOLERANCE_SECONDS")
}

#[test]
fn env_example_lists_every_setting_and_only_real_ones() {
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let listed = names(&example);

    let mut sources = Vec::new();
    rust_files(&root().join("src"), &mut sources);
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut sources);
        }
    }
    let mut read = BTreeSet::new();
    for file in &sources {
        read.extend(names(&std::fs::read_to_string(file).unwrap()));
    }
    let missing: Vec<_> = read
        .iter()
        .filter(|n| !per_use_case(n) && !listed.contains(*n))
        .collect();
    assert!(missing.is_empty(), "settings read by the code but not in .env.example: {missing:?}");
    for family in ["ASYNC_JOBS_SQS_QUEUE_", "_MAX_CONCURRENT", "_DEFAULT_DELAY_TOLERANCE_SECONDS"] {
        assert!(
            listed.iter().any(|n| n.contains(family)),
            ".env.example has no example of {family}"
        );
    }

    // And nothing stale: every listed name is read somewhere (sources, tests, scripts).
    let mut everything = sources;
    rust_files(&root().join("tests"), &mut everything);
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let tests = krate.unwrap().path().join("tests");
        if tests.is_dir() {
            rust_files(&tests, &mut everything);
        }
    }
    let mut anywhere = read;
    for file in &everything {
        anywhere.extend(names(&std::fs::read_to_string(file).unwrap()));
    }
    let stale: Vec<_> = listed
        .iter()
        .filter(|n| !per_use_case(n) && !anywhere.contains(*n))
        .collect();
    assert!(stale.is_empty(), "listed in .env.example but read nowhere: {stale:?}");
}

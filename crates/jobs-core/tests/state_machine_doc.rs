//! Keeps docs/state_machine.md in step with the transition table.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use jobs_core::status::TRANSITIONS;

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/state_machine.md"
    ))
    .unwrap()
}

fn table() -> BTreeSet<(String, String, String)> {
    TRANSITIONS
        .iter()
        .map(|e| (e.from.to_string(), e.event.to_string(), e.to.to_string()))
        .collect()
}

#[test]
fn diagram_edges_match_the_transition_table() {
    let doc = doc();
    let edges: BTreeSet<(String, String, String)> = doc
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("-->") && !l.starts_with("[*]"))
        .map(|l| {
            let (from, rest) = l.split_once("-->").unwrap();
            let (to, event) = rest.split_once(':').unwrap();
            (
                from.trim().to_owned(),
                event.trim().to_owned(),
                to.trim().to_owned(),
            )
        })
        .collect();
    assert_eq!(edges, table());
}

#[test]
fn markdown_table_rows_match_the_transition_table() {
    let doc = doc();
    let statuses: Vec<&str> = jobs_core::JobStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let rows: BTreeSet<(String, String, String)> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() > 4 && statuses.contains(&cells[1])).then(|| {
                (
                    cells[1].to_owned(),
                    cells[2].to_owned(),
                    cells[3].to_owned(),
                )
            })
        })
        .collect();
    assert_eq!(rows, table());
}

//! Helpers of the fault suite (`tests/faults.rs`, `tests/fault_postgres_restart.rs`): the
//! sample handlers' side-effect log, the SQL invariant check over a schema's whole jobs table,
//! a sampler of in-flight and unfinished counts during a run, and small polling helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::JobId;
use tokio::sync::Mutex;

use crate::common::{binary, database_url, World};

/// A plain connection to the test database.
pub async fn db() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Like [`db`], retrying while the server is restarting.
pub async fn db_patiently(within: Duration) -> tokio_postgres::Client {
    let start = Instant::now();
    loop {
        match tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return client;
            }
            Err(e) => {
                assert!(start.elapsed() < within, "database unreachable: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Turns the side-effect log on for every worker the world spawns from now on, in the world's
/// schema, and creates its table so it can be queried before any run.
pub async fn enable_side_effects(w: &mut World) {
    w.env
        .insert("ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_DSN".into(), database_url());
    w.env.insert(
        "ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_SCHEMA".into(),
        w.schema.clone(),
    );
    db().await
        .batch_execute(&jobs_samples::SideEffectLog::ddl(&w.schema))
        .await
        .unwrap();
}

/// One recorded handler run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub attempt: i64,
    pub worker_pid: i64,
    pub ok: bool,
    pub duplicates: i32,
}

/// The runs of one job, by attempt.
pub async fn runs(schema: &str, job: JobId) -> Vec<Run> {
    let rows = db()
        .await
        .query(
            &format!(
                "SELECT attempt, worker_pid, ok_at IS NOT NULL, duplicates
                 FROM \"{schema}\".handler_runs WHERE job_id = $1 ORDER BY attempt"
            ),
            &[&job],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| Run {
            attempt: r.get(0),
            worker_pid: r.get(1),
            ok: r.get(2),
            duplicates: r.get(3),
        })
        .collect()
}

/// Handler executions per job (rows + duplicate runs of the same attempt).
pub async fn executions(schema: &str) -> BTreeMap<JobId, i64> {
    let rows = db()
        .await
        .query(
            &format!(
                "SELECT job_id, count(*) + sum(duplicates) FROM \"{schema}\".handler_runs GROUP BY job_id"
            ),
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get::<_, JobId>(0), r.get::<_, i64>(1)))
        .collect()
}

/// What the invariant check found (it panics on a violation).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub jobs: i64,
    pub by_status: BTreeMap<String, i64>,
    /// Handler executions in total (runs + duplicate runs).
    pub executions: i64,
    /// Jobs whose handler ran more than once.
    pub re_executed_jobs: i64,
    /// Runs of an attempt that had already run (same (job, attempt) twice).
    pub duplicate_runs: i64,
}

impl Figures {
    pub fn count(&self, status: &str) -> i64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }
}

/// How strict [`check_invariants`] is.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The sample handlers recorded their runs (side-effect log on).
    pub side_effects: bool,
    /// Runs of the same (job, attempt) allowed (a job released at shutdown reruns its attempt).
    pub allow_duplicate_runs: bool,
}

impl Default for Check {
    fn default() -> Self {
        Check {
            side_effects: true,
            allow_duplicate_runs: false,
        }
    }
}

async fn violations(client: &tokio_postgres::Client, what: &str, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{what}: {}", r.get::<_, String>(0)))
        .collect()
}

/// The invariant check over the whole jobs table of `schema`, run after a scenario:
/// - every job is terminal, or pending and not yet due (a backoff or a future `run_at`);
/// - `attempts <= max_attempts`;
/// - terminal jobs hold no live lease and have `finished_at`;
/// - with the side-effect log: no job completed by a stale lease (a succeeded job's last attempt
///   ran and returned `Ok` before the job was finished), no run recorded for an attempt the job
///   never had, and no (job, attempt) run twice.
///
/// Panics listing every violation; returns the figures.
pub async fn check_invariants(schema: &str, check: Check) -> Figures {
    let client = db().await;
    let t = format!("\"{schema}\".jobs");
    let mut bad = Vec::new();
    bad.extend(
        violations(
            &client,
            "not terminal nor legitimately pending",
            &format!(
                "SELECT id::text || ' ' || status || ' attempts ' || attempts FROM {t}
                 WHERE NOT (status IN ('succeeded', 'dead', 'cancelled', 'expired')
                            OR (status = 'pending' AND run_at > now()))"
            ),
        )
        .await,
    );
    bad.extend(
        violations(
            &client,
            "attempts > max_attempts",
            &format!(
                "SELECT id::text || ' ' || attempts || '/' || max_attempts FROM {t}
                 WHERE attempts > max_attempts"
            ),
        )
        .await,
    );
    bad.extend(
        violations(
            &client,
            "terminal without finished_at",
            &format!(
                "SELECT id::text || ' ' || status FROM {t}
                 WHERE status IN ('succeeded', 'dead', 'cancelled', 'expired') AND finished_at IS NULL"
            ),
        )
        .await,
    );
    let mut figures = Figures::default();
    for r in client
        .query(
            &format!("SELECT status, count(*) FROM {t} GROUP BY status"),
            &[],
        )
        .await
        .unwrap()
    {
        let n: i64 = r.get(1);
        figures.jobs += n;
        figures.by_status.insert(r.get(0), n);
    }
    if check.side_effects {
        let h = format!("\"{schema}\".handler_runs");
        bad.extend(
            violations(
                &client,
                "completed by a stale lease (its last attempt did not finish Ok first)",
                &format!(
                    "SELECT j.id::text || ' attempts ' || j.attempts FROM {t} j
                     WHERE j.status = 'succeeded' AND NOT EXISTS (
                        SELECT 1 FROM {h} r WHERE r.job_id = j.id AND r.attempt = j.attempts
                          AND r.ok_at IS NOT NULL AND r.ok_at <= j.finished_at)"
                ),
            )
            .await,
        );
        bad.extend(
            violations(
                &client,
                "a run of an attempt the job never had",
                &format!(
                    "SELECT r.job_id::text || ' attempt ' || r.attempt FROM {h} r
                     LEFT JOIN {t} j ON j.id = r.job_id
                     WHERE j.id IS NULL OR r.attempt > j.attempts OR r.attempt < 1"
                ),
            )
            .await,
        );
        if !check.allow_duplicate_runs {
            bad.extend(
                violations(
                    &client,
                    "one attempt ran twice",
                    &format!(
                        "SELECT job_id::text || ' attempt ' || attempt || ' x' || (duplicates + 1)
                         FROM {h} WHERE duplicates > 0"
                    ),
                )
                .await,
            );
        }
        let row = client
            .query_one(
                &format!(
                    "SELECT coalesce(sum(n), 0)::bigint, count(*) FILTER (WHERE n > 1),
                            coalesce(sum(d), 0)::bigint
                     FROM (SELECT job_id, count(*) + sum(duplicates) AS n, sum(duplicates) AS d
                           FROM {h} GROUP BY job_id) x"
                ),
                &[],
            )
            .await
            .unwrap();
        figures.executions = row.get(0);
        figures.re_executed_jobs = row.get(1);
        figures.duplicate_runs = row.get(2);
    }
    if !bad.is_empty() {
        let shown: Vec<&String> = bad.iter().take(20).collect();
        panic!(
            "{} invariant violation(s) in {schema} ({figures:?}):\n{shown:#?}",
            bad.len()
        );
    }
    figures
}

/// Largest counts the sampler saw.
#[derive(Debug, Clone, Default)]
pub struct Sampled {
    pub samples: u64,
    /// Most jobs dispatched or running at once, per use case.
    pub max_in_flight: BTreeMap<String, i64>,
    /// Most unfinished jobs at once, per (tenant, use case).
    pub max_unfinished: BTreeMap<(String, String), i64>,
}

/// Samples in-flight and unfinished counts every `every` until stopped; survives a database
/// restart (failed samples are skipped).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Sampled>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(schema: &str, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Sampled::default()));
        let t = format!("\"{schema}\".jobs");
        let task = {
            let (stop, seen) = (stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut client: Option<tokio_postgres::Client> = None;
                while !stop.load(Ordering::SeqCst) {
                    if client.as_ref().is_none_or(|c| c.is_closed()) {
                        client = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
                            .await
                            .ok()
                            .map(|(c, conn)| {
                                tokio::spawn(conn);
                                c
                            });
                    }
                    if let Some(c) = &client {
                        let in_flight = c
                            .query(
                                &format!(
                                    "SELECT use_case, count(*) FROM {t}
                                     WHERE status IN ('dispatched', 'running') GROUP BY use_case"
                                ),
                                &[],
                            )
                            .await;
                        let unfinished = c
                            .query(
                                &format!(
                                    "SELECT tenant_id, use_case, count(*) FROM {t}
                                     WHERE status IN ('pending', 'dispatched', 'running')
                                     GROUP BY tenant_id, use_case"
                                ),
                                &[],
                            )
                            .await;
                        if let (Ok(a), Ok(b)) = (in_flight, unfinished) {
                            let mut s = seen.lock().await;
                            s.samples += 1;
                            for r in a {
                                let e = s.max_in_flight.entry(r.get(0)).or_default();
                                *e = (*e).max(r.get(1));
                            }
                            for r in b {
                                let e = s.max_unfinished.entry((r.get(0), r.get(1))).or_default();
                                *e = (*e).max(r.get(2));
                            }
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        Sampler { stop, seen, task }
    }

    pub async fn stop(self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.seen.lock().await.clone()
    }
}

/// Asserts no use case ever had more than `cap` jobs in flight.
pub fn assert_caps(s: &Sampled, cap: i64) {
    assert!(s.samples >= 5, "too few samples: {s:?}");
    for (uc, n) in &s.max_in_flight {
        assert!(*n <= cap, "{n} jobs of {uc} in flight with a cap of {cap}");
    }
}

/// Polls `f` until it returns `Some`, panicking with `what` after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no job of the schema is dispatched or running, nor pending and due.
pub async fn wait_quiescent(schema: &str, within: Duration) {
    let t = format!("\"{schema}\".jobs");
    wait_for("every job terminal or not yet due", within, || async {
        let c = db_patiently(Duration::from_secs(30)).await;
        let n: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {t} WHERE status IN ('dispatched', 'running')
                     OR (status = 'pending' AND run_at <= now())"
                ),
                &[],
            )
            .await
            .ok()?
            .get(0);
        (n == 0).then_some(())
    })
    .await;
}

/// The log of a process the world spawned as `name`.
pub fn log_of(schema: &str, name: &str) -> String {
    let path = binary("async-jobs")
        .parent()
        .unwrap()
        .join("e2e-logs")
        .join(format!("{schema}-{name}.log"));
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Job ids as a set.
pub fn set(ids: &[JobId]) -> BTreeSet<JobId> {
    ids.iter().copied().collect()
}

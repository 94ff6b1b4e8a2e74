//! Scenario 5: deadlines under overload — arrivals at a multiple of the cap's capacity with a
//! mix of tolerances and three tenants, one flooding; share of jobs started by their deadline,
//! earliest-deadline-first versus plain FIFO.
//!
//! The trace runs in virtual time through the real pick of the in-memory store (the reference
//! semantics of the Postgres pick: same order, same cap) driven by a manual clock. FIFO is the
//! same pick fed jobs that all carry the longest tolerance, so their deadline order is their
//! arrival order; hits are always judged against each job's true deadline. Production code is
//! not changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs_core::memory::MemoryStore;
use jobs_core::{ApiStore, Clock, DispatchStore, JobId, LeaseStore, ManualClock, PickRequest};
use serde_json::json;

use crate::db::{self, USE_CASE};
use crate::stats::round3;

/// Scenario 5's parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct DeadlineArgs {
    /// Seconds of arrivals.
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// The use case's concurrency cap.
    #[arg(long, default_value_t = 10)]
    pub cap: u32,
    /// Service time of every job, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub service_ms: u64,
    /// Arrival rate as a multiple of the capacity (`cap / service time`).
    #[arg(long, default_value_t = 1.5)]
    pub overload: f64,
    /// Share of arrivals from the flooding tenant.
    #[arg(long, default_value_t = 0.6)]
    pub flood_share: f64,
    /// Scheduler step in virtual milliseconds.
    #[arg(long, default_value_t = 50)]
    pub step_ms: u64,
    /// Random seed of the trace.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Pick order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Edf,
    Fifo,
}

const TOLERANCES_S: [u64; 3] = [10, 60, 600];
const TENANTS: [&str; 3] = ["flood", "tenant_b", "tenant_c"];

struct Arrival {
    at_ms: u64,
    tenant: &'static str,
    tolerance_s: u64,
}

fn trace(args: &DeadlineArgs) -> Vec<Arrival> {
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let per_s = args.overload * f64::from(args.cap) / (args.service_ms as f64 / 1000.0);
    let n = (per_s * args.duration_s as f64).round() as u64;
    (0..n)
        .map(|i| {
            let tenant = if rng.f64() < args.flood_share {
                TENANTS[0]
            } else {
                TENANTS[1 + rng.usize(0..2)]
            };
            Arrival {
                at_ms: (i as f64 * 1000.0 / per_s) as u64,
                tenant,
                tolerance_s: TOLERANCES_S[rng.usize(0..3)],
            }
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Tally {
    jobs: u64,
    hits: u64,
}

impl Tally {
    fn json(self) -> serde_json::Value {
        json!({ "jobs": self.jobs, "hit": self.hits, "hit_rate": round3(self.hits as f64 / self.jobs.max(1) as f64) })
    }
}

async fn simulate(
    args: &DeadlineArgs,
    arrivals: &[Arrival],
    order: Order,
) -> anyhow::Result<serde_json::Value> {
    let clock = Arc::new(ManualClock::default());
    let t0: DateTime<Utc> = clock.now();
    let at = |ms: u64| t0 + chrono::Duration::milliseconds(ms as i64);
    let store = MemoryStore::new(Arc::clone(&clock) as Arc<dyn Clock>);
    let config = db::platform(args.cap);
    let lease = Duration::from_secs(3600);
    let mut truth: HashMap<JobId, (&'static str, u64, DateTime<Utc>)> = HashMap::new();
    let mut running: Vec<(u64, JobId, jobs_core::LeaseToken)> = Vec::new();
    let mut started = 0usize;
    let mut tallies: HashMap<String, Tally> = HashMap::new();
    let mut next = 0usize;
    let mut now_ms = 0u64;
    while started < arrivals.len() {
        now_ms += args.step_ms;
        while next < arrivals.len() && arrivals[next].at_ms <= now_ms {
            let a = &arrivals[next];
            clock.set(at(a.at_ms));
            let tolerance = match order {
                Order::Edf => a.tolerance_s,
                Order::Fifo => TOLERANCES_S[2],
            };
            let req = db::request(a.tenant).delay_tolerance(Duration::from_secs(tolerance));
            let job = jobs_core::enqueue::validate(req, &config, clock.now())?;
            let id = store.enqueue(job).await?.job.id;
            truth.insert(
                id,
                (a.tenant, a.tolerance_s, at(a.at_ms + a.tolerance_s * 1000)),
            );
            next += 1;
        }
        clock.set(at(now_ms));
        let mut still = Vec::with_capacity(running.len());
        for (end, id, token) in running.drain(..) {
            if end <= now_ms {
                store.complete(id, token).await?;
            } else {
                still.push((end, id, token));
            }
        }
        running = still;
        for d in store
            .lease_due(
                USE_CASE,
                PickRequest {
                    cap: args.cap,
                    limit: args.cap,
                    lease,
                },
            )
            .await?
        {
            store.claim(d.job_id, d.lease_token, lease).await?;
            running.push((now_ms + args.service_ms, d.job_id, d.lease_token));
            started += 1;
            let (tenant, tolerance, deadline) = truth
                .get(&d.job_id)
                .copied()
                .ok_or_else(|| anyhow::anyhow!("unknown job leased"))?;
            let hit = clock.now() <= deadline;
            for key in [
                "overall".to_owned(),
                format!("tenant:{tenant}"),
                format!("tolerance_s:{tolerance}"),
            ] {
                let t = tallies.entry(key).or_default();
                t.jobs += 1;
                t.hits += u64::from(hit);
            }
        }
    }
    let mut out = serde_json::Map::new();
    let mut keys: Vec<_> = tallies.keys().cloned().collect();
    keys.sort();
    for k in keys {
        out.insert(k.clone(), tallies[&k].json());
    }
    out.insert("virtual_seconds".into(), json!(now_ms as f64 / 1000.0));
    Ok(serde_json::Value::Object(out))
}

/// Runs scenario 5 (no database needed).
pub async fn run(args: DeadlineArgs) -> anyhow::Result<serde_json::Value> {
    let arrivals = trace(&args);
    let edf = simulate(&args, &arrivals, Order::Edf).await?;
    let fifo = simulate(&args, &arrivals, Order::Fifo).await?;
    let rate = |v: &serde_json::Value| v["overall"]["hit_rate"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "scenario": "deadline",
        "arrivals": arrivals.len(),
        "cap": args.cap,
        "service_ms": args.service_ms,
        "overload": args.overload,
        "flood_share": args.flood_share,
        "tolerances_s": TOLERANCES_S,
        "edf": edf,
        "fifo": fifo,
        "edf_beats_fifo": rate(&edf) > rate(&fifo),
    }))
}

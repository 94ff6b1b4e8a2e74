//! Scenario 5: deadlines and fair share under overload — arrivals at a multiple of the cap's
//! capacity from one flooding tenant with tight deadlines and several well-behaved tenants at or
//! under their shares; per tenant, the share of jobs started by their deadline and the throughput,
//! for FIFO, plain EDF and fair EDF side by side; and a weighted run (every tenant saturating,
//! weights 2:1:1) that reports how the starts split.
//!
//! The trace runs in virtual time through the real pick of a store (the in-memory store, whose
//! pick is the reference semantics, and with `--store postgres|both` the Postgres store with the
//! same manual clock injected) driven step by step: arrivals are enqueued through the enqueue
//! validation with the run's configuration, finished jobs completed, then one pick per step under
//! the cap. FIFO is plain EDF fed jobs that all carry the longest tolerance (so deadline order is
//! arrival order); hits are always judged against each job's true deadline. Deterministic per
//! seed and store.
//!
//! Every job's predicted start (`jobs_core::predict`) is recorded at its enqueue, as the API
//! answers it: the store's queue position of the job, the cap, and the drain rate the sim
//! records each step as the leading scheduler does (a [`DrainRate`] fed with the step's
//! dispatches, stored with `record_drain_rate`). Its error is the distance to the job's actual
//! start, reported (median and p90, seconds) for plain and fair EDF under the overload trace
//! and under a steady trace (`--steady-load`, default 0.8 of the capacity).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs_core::memory::MemoryStore;
use jobs_core::predict::{self, Prediction, DEFAULT_AHEAD_BOUND};
use jobs_core::scaling::{DrainRate, DEFAULT_RATE_WINDOW};
use jobs_core::{
    Clock, JobId, JobStore, ManualClock, PickRequest, PlatformConfig, UseCaseConfig, WeightConfig,
};
use serde_json::json;

use crate::db::{self, BenchDb, USE_CASE};
use crate::stats::{quantile, round3};

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
    /// How many well-behaved tenants.
    #[arg(long, default_value_t = 4)]
    pub good_tenants: u32,
    /// Each well-behaved tenant's arrival rate as a share of the capacity (its fair share is
    /// `1 / (good_tenants + 1)`); the flooder sends the rest of the overload.
    #[arg(long, default_value_t = 0.18)]
    pub good_share: f64,
    /// The flooder's tolerance in seconds (tighter than every well-behaved tolerance).
    #[arg(long, default_value_t = 5)]
    pub flood_tolerance_s: u64,
    /// Scheduler step in virtual milliseconds.
    #[arg(long, default_value_t = 50)]
    pub step_ms: u64,
    /// Random seed of the trace.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Which store's pick runs the trace: `memory`, `postgres` (the bench database) or `both`.
    #[arg(long, default_value = "memory")]
    pub store: String,
    /// The arrival rate of the steady run of the prediction's error, as a multiple of the
    /// capacity (the same tenants as the overload trace, the flooder sending the rest).
    #[arg(long, default_value_t = 0.8)]
    pub steady_load: f64,
}

/// Pick order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Fifo,
    Edf,
    Fair,
}

impl Order {
    fn name(self) -> &'static str {
        match self {
            Order::Fifo => "fifo",
            Order::Edf => "edf",
            Order::Fair => "fair_edf",
        }
    }
}

/// The well-behaved tenants' tolerances, drawn uniformly.
const GOOD_TOLERANCES_S: [u64; 3] = [15, 30, 60];
/// The tolerance every FIFO job carries (longer than any real one).
const FIFO_TOLERANCE_S: u64 = 3600;
const FLOOD: &str = "flood";

#[derive(Debug, Clone)]
struct Arrival {
    at_ms: u64,
    tenant: String,
    tolerance_s: u64,
}

/// Poisson-free, deterministic interleaving: each tenant arrives at its own steady rate with a
/// random phase, and the tolerances are drawn per job.
fn arrivals(seed: u64, duration_s: u64, rates: &[(String, f64, Vec<u64>)]) -> Vec<Arrival> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for (tenant, per_s, tolerances) in rates {
        if *per_s <= 0.0 {
            continue;
        }
        let gap = 1000.0 / per_s;
        let mut at = rng.f64() * gap;
        while at < (duration_s * 1000) as f64 {
            out.push(Arrival {
                at_ms: at as u64,
                tenant: tenant.clone(),
                tolerance_s: tolerances[rng.usize(0..tolerances.len())],
            });
            at += gap;
        }
    }
    out.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then(a.tenant.cmp(&b.tenant)));
    out
}

fn capacity_per_s(args: &DeadlineArgs) -> f64 {
    f64::from(args.cap) / (args.service_ms as f64 / 1000.0)
}

fn overload_trace(args: &DeadlineArgs) -> Vec<Arrival> {
    let capacity = capacity_per_s(args);
    let good = f64::from(args.good_tenants) * args.good_share;
    let flood = (args.overload - good).max(0.0);
    let mut rates = vec![(
        FLOOD.to_owned(),
        flood * capacity,
        vec![args.flood_tolerance_s],
    )];
    for i in 0..args.good_tenants {
        rates.push((
            format!("good_{i}"),
            args.good_share * capacity,
            GOOD_TOLERANCES_S.to_vec(),
        ));
    }
    arrivals(args.seed, args.duration_s, &rates)
}

/// Every tenant saturating on its own (each arrives at the whole capacity).
fn weighted_trace(args: &DeadlineArgs, tenants: &[(&str, u32)]) -> Vec<Arrival> {
    let capacity = capacity_per_s(args);
    let rates: Vec<(String, f64, Vec<u64>)> = tenants
        .iter()
        .map(|(t, _)| ((*t).to_owned(), capacity, vec![60]))
        .collect();
    arrivals(args.seed, args.duration_s, &rates)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    jobs: u64,
    hits: u64,
    /// Started while arrivals were still coming (the saturated window).
    in_window: u64,
}

/// How the predicted starts compared with the actual ones.
#[derive(Default, Clone)]
struct PredictionErrors {
    /// |actual start − predicted start| in seconds, per job with a prediction.
    abs_error_s: Vec<f64>,
    /// Predicted start minus actual start (negative: the job started later than predicted).
    signed_error_s: Vec<f64>,
    /// Jobs enqueued without a prediction (no drain rate known yet and no place free).
    unknown: u64,
    /// Jobs whose `at_risk` matched whether they started after their deadline.
    at_risk_right: u64,
}

impl PredictionErrors {
    fn json(&self) -> serde_json::Value {
        let mut abs = self.abs_error_s.clone();
        abs.sort_by(f64::total_cmp);
        let mut signed = self.signed_error_s.clone();
        signed.sort_by(f64::total_cmp);
        let n = abs.len();
        json!({
            "predicted": n,
            "unknown": self.unknown,
            "median_abs_error_s": round3(quantile(&abs, 0.5)),
            "p90_abs_error_s": round3(quantile(&abs, 0.9)),
            "median_signed_error_s": round3(quantile(&signed, 0.5)),
            "at_risk_accuracy": round3(self.at_risk_right as f64 / n.max(1) as f64),
        })
    }
}

/// What one simulated run measured.
struct Outcome {
    tallies: BTreeMap<String, Tally>,
    prediction: PredictionErrors,
}

/// Where a trace runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Memory,
    Postgres,
}

async fn make_store(
    kind: StoreKind,
    clock: &Arc<ManualClock>,
) -> anyhow::Result<(Arc<dyn JobStore>, Option<BenchDb>)> {
    Ok(match kind {
        StoreKind::Memory => (
            Arc::new(MemoryStore::new(Arc::clone(clock) as Arc<dyn Clock>)),
            None,
        ),
        StoreKind::Postgres => {
            let bench = BenchDb::fresh(&db::database_url(), "deadline").await?;
            let store = bench
                .store(2)?
                .with_clock(Arc::clone(clock) as Arc<dyn Clock>);
            (Arc::new(store), Some(bench))
        }
    })
}

async fn simulate(
    args: &DeadlineArgs,
    kind: StoreKind,
    config: &PlatformConfig,
    arrivals: &[Arrival],
    fifo: bool,
) -> anyhow::Result<Outcome> {
    let clock = Arc::new(ManualClock::default());
    let t0: DateTime<Utc> = clock.now();
    let at = |ms: u64| t0 + chrono::Duration::milliseconds(ms as i64);
    let (store, bench) = make_store(kind, &clock).await?;
    let lease = Duration::from_secs(3600);
    let window_ms = args.duration_s * 1000;
    let mut truth: HashMap<JobId, (String, DateTime<Utc>)> = HashMap::new();
    // The prediction made at each job's enqueue, and the drain rate the leader would store.
    let mut predicted: HashMap<JobId, Prediction> = HashMap::new();
    let mut errors = PredictionErrors::default();
    let mut drain = DrainRate::new(DEFAULT_RATE_WINDOW);
    let mut running: Vec<(u64, JobId, jobs_core::LeaseToken)> = Vec::new();
    let mut started = 0usize;
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut next = 0usize;
    let mut now_ms = 0u64;
    while started < arrivals.len() {
        now_ms += args.step_ms;
        while next < arrivals.len() && arrivals[next].at_ms <= now_ms {
            let a = &arrivals[next];
            clock.set(at(a.at_ms));
            let tolerance = if fifo {
                FIFO_TOLERANCE_S
            } else {
                a.tolerance_s
            };
            let req = db::request(&a.tenant).delay_tolerance(Duration::from_secs(tolerance));
            let job = jobs_core::enqueue::validate(req, config, clock.now())?;
            let job = store.enqueue(job).await?.job;
            let id = job.id;
            let position = store.queue_position(id, DEFAULT_AHEAD_BOUND).await?;
            predicted.insert(
                id,
                predict::from_position(&job, position.as_ref(), args.cap),
            );
            truth.insert(id, (a.tenant.clone(), at(a.at_ms + a.tolerance_s * 1000)));
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
        let pick = PickRequest {
            cap: args.cap,
            limit: args.cap,
            lease,
        };
        let leased = store.lease_due(USE_CASE, pick).await?;
        drain.observe(Duration::from_millis(args.step_ms), leased.len() as u64);
        store
            .record_drain_rate(USE_CASE, drain.per_second())
            .await?;
        for d in leased {
            store.claim(d.job_id, d.lease_token, lease).await?;
            match predicted.remove(&d.job_id) {
                Some(Prediction {
                    predicted_start_at: Some(p),
                    at_risk,
                }) => {
                    let signed = (p - clock.now()).as_seconds_f64();
                    errors.abs_error_s.push(signed.abs());
                    errors.signed_error_s.push(signed);
                    // Judged against the deadline the job was enqueued with (as the API sees it).
                    let late = d.deadline_at < clock.now();
                    errors.at_risk_right += u64::from(at_risk == Some(late));
                }
                _ => errors.unknown += 1,
            }
            running.push((now_ms + args.service_ms, d.job_id, d.lease_token));
            started += 1;
            let (tenant, deadline) = truth
                .get(&d.job_id)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("unknown job leased"))?;
            let hit = clock.now() <= deadline;
            for key in ["overall".to_owned(), tenant] {
                let t = tallies.entry(key).or_default();
                t.jobs += 1;
                t.hits += u64::from(hit);
                t.in_window += u64::from(now_ms <= window_ms);
            }
        }
        if now_ms > window_ms + 3_600_000 {
            anyhow::bail!("the trace did not drain within an hour of virtual time");
        }
    }
    if let Some(bench) = bench {
        bench.drop_schema().await?;
    }
    Ok(Outcome {
        tallies,
        prediction: errors,
    })
}

fn tally_json(tallies: &BTreeMap<String, Tally>, duration_s: u64) -> serde_json::Value {
    let window_total = tallies.get("overall").map_or(0, |t| t.in_window).max(1);
    let per: serde_json::Map<String, serde_json::Value> = tallies
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                json!({
                    "jobs": t.jobs,
                    "hit": t.hits,
                    "hit_rate": round3(t.hits as f64 / t.jobs.max(1) as f64),
                    "throughput_per_s": round3(t.in_window as f64 / duration_s.max(1) as f64),
                    "throughput_share": round3(t.in_window as f64 / window_total as f64),
                }),
            )
        })
        .collect();
    serde_json::Value::Object(per)
}

fn config(args: &DeadlineArgs, fair: bool, weights: WeightConfig) -> PlatformConfig {
    PlatformConfig::with_use_cases([UseCaseConfig::new(
        USE_CASE,
        args.cap,
        Duration::from_secs(300),
    )
    .with_fair_share(fair)])
    .with_weights(weights)
}

async fn run_on(args: &DeadlineArgs, kind: StoreKind) -> anyhow::Result<serde_json::Value> {
    let trace = overload_trace(args);
    let mut orders = serde_json::Map::new();
    let mut by_order: HashMap<&str, BTreeMap<String, Tally>> = HashMap::new();
    let mut overload_errors = serde_json::Map::new();
    for order in [Order::Fifo, Order::Edf, Order::Fair] {
        let cfg = config(args, order == Order::Fair, WeightConfig::equal());
        let run = simulate(args, kind, &cfg, &trace, order == Order::Fifo).await?;
        orders.insert(
            order.name().to_owned(),
            tally_json(&run.tallies, args.duration_s),
        );
        if order != Order::Fifo {
            overload_errors.insert(order.name().to_owned(), run.prediction.json());
        }
        by_order.insert(order.name(), run.tallies);
    }
    // The prediction's error under a steady load (below the capacity), same tenants.
    let steady_args = DeadlineArgs {
        overload: args.steady_load,
        ..args.clone()
    };
    let steady = overload_trace(&steady_args);
    let mut steady_errors = serde_json::Map::new();
    for order in [Order::Edf, Order::Fair] {
        let cfg = config(args, order == Order::Fair, WeightConfig::equal());
        let run = simulate(args, kind, &cfg, &steady, false).await?;
        steady_errors.insert(order.name().to_owned(), run.prediction.json());
    }
    let fair = &by_order["fair_edf"];
    let edf = &by_order["edf"];
    let good_min = fair
        .iter()
        .filter(|(k, _)| k.starts_with("good_"))
        .map(|(_, t)| t.hits as f64 / t.jobs.max(1) as f64)
        .fold(1.0f64, f64::min);
    let window = |t: &BTreeMap<String, Tally>, k: &str| t.get(k).map_or(0, |t| t.in_window) as f64;
    let fair_share = 1.0 / f64::from(args.good_tenants + 1);
    let flood_share = window(fair, FLOOD) / window(fair, "overall").max(1.0);

    // Weighted: three saturating tenants, weights 2:1:1, fair EDF.
    let tenants = [("heavy", 2u32), ("light_a", 1), ("light_b", 1)];
    let weights = tenants.iter().fold(WeightConfig::equal(), |w, (t, n)| {
        w.with_weight(t, USE_CASE, *n)
    });
    let wtrace = weighted_trace(args, &tenants);
    let wt = simulate(args, kind, &config(args, true, weights), &wtrace, false)
        .await?
        .tallies;
    let total_w: u32 = tenants.iter().map(|t| t.1).sum();
    let mut split = serde_json::Map::new();
    let mut worst_error = 0.0f64;
    for (t, w) in tenants {
        let share = window(&wt, t) / window(&wt, "overall").max(1.0);
        let want = f64::from(w) / f64::from(total_w);
        let error = (share - want).abs() / want;
        worst_error = worst_error.max(error);
        split.insert(
            t.to_owned(),
            json!({"weight": w, "share": round3(share), "target": round3(want), "relative_error": round3(error)}),
        );
    }
    Ok(json!({
        "orders": orders,
        "targets": {
            "good_min_hit_rate_fair": round3(good_min),
            "flood_throughput_share_fair": round3(flood_share),
            "flood_weighted_share": round3(fair_share),
            "fair_over_edf_throughput": round3(window(fair, "overall") / window(edf, "overall").max(1.0)),
            "weighted_worst_relative_error": round3(worst_error),
        },
        "weighted_2_1_1": split,
        "prediction": {
            "steady": {"load": args.steady_load, "orders": steady_errors},
            "overload": {"load": args.overload, "orders": overload_errors},
        },
    }))
}

/// Runs scenario 5 (`--store postgres|both` needs the bench database).
pub async fn run(args: DeadlineArgs) -> anyhow::Result<serde_json::Value> {
    let kinds: Vec<(&str, StoreKind)> = match args.store.as_str() {
        "memory" => vec![("memory", StoreKind::Memory)],
        "postgres" => vec![("postgres", StoreKind::Postgres)],
        "both" => vec![
            ("memory", StoreKind::Memory),
            ("postgres", StoreKind::Postgres),
        ],
        other => anyhow::bail!("--store must be memory, postgres or both, not {other:?}"),
    };
    let trace = overload_trace(&args);
    let mut per_tenant_rate = BTreeMap::new();
    for a in &trace {
        *per_tenant_rate.entry(a.tenant.clone()).or_insert(0.0) += 1.0 / args.duration_s as f64;
    }
    let mut stores = serde_json::Map::new();
    for (name, kind) in kinds {
        stores.insert(name.to_owned(), run_on(&args, kind).await?);
    }
    Ok(json!({
        "scenario": "deadline",
        "arrivals": trace.len(),
        "arrivals_per_s": per_tenant_rate.into_iter().map(|(k, v)| (k, json!(round3(v)))).collect::<serde_json::Map<_, _>>(),
        "capacity_per_s": round3(capacity_per_s(&args)),
        "cap": args.cap,
        "service_ms": args.service_ms,
        "overload": args.overload,
        "flood_tolerance_s": args.flood_tolerance_s,
        "good_tolerances_s": GOOD_TOLERANCES_S,
        "stores": stores,
    }))
}

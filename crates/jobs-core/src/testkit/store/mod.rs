//! The shared `JobStore` conformance suite, one file per concern.
//!
//! Each case takes a factory `make(clock)` ([`MakeStore`]) that returns a fresh, empty store
//! reading time from `clock` (for a database: a fresh schema). Run all cases with
//! [`store_conformance_tests!`](crate::store_conformance_tests):
//!
//! ```ignore
//! use std::sync::Arc;
//! use jobs_core::{memory::MemoryStore, JobStore, ManualClock};
//!
//! // Your store here: fresh and empty, reading time from `clock` (as `tests/memory_conformance.rs`
//! // does for the in-memory store, and jobs-postgres' `tests/conformance.rs` with a new schema).
//! async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn JobStore> {
//!     Arc::new(MemoryStore::new(clock))
//! }
//! jobs_core::store_conformance_tests!(make_store);
//! ```
//!
//! The concerns: `enqueue` (fields, idempotency, batches, trace context), `quota`, `pick` (the
//! scheduler's EDF pick under caps), `deadline`, `lease` (claim, heartbeat and the outcomes a
//! worker records), `fencing`, `reaper` (expired leases, refused dispatches, counts and pruning),
//! `backlog` (due pending jobs and the oldest, for the telemetry),
//! `cancel_retry`, `list`, `wakeup`, `pause`, `rate`, `expiry`, `schedule` (cron schedules and their fenced firing), `fair` (weighted fair share), `activity` (the dashboard's
//! per-minute activity) and `predict` (the queue position behind a predicted start). Every case is re-exported here, so its path is
//! `jobs_core::testkit::store::<case>` whichever file holds it. A new case goes in the file of
//! its concern *and* in the macro's list; a unit test checks that the two agree.
#![allow(clippy::unwrap_used, missing_docs)]

mod activity;
mod backlog;
mod cancel_retry;
mod deadline;
mod enqueue;
mod expiry;
mod fair;
mod fencing;
mod lease;
mod list;
mod pause;
mod pick;
mod predict;
mod quota;
mod rate;
mod reaper;
mod schedule;
mod wakeup;

pub use activity::*;
pub use backlog::*;
pub use cancel_retry::*;
pub use deadline::*;
pub use enqueue::*;
pub use expiry::*;
pub use fair::*;
pub use fencing::*;
pub use lease::*;
pub use list::*;
pub use pause::*;
pub use pick::*;
pub use predict::*;
pub use quota::*;
pub use rate::*;
pub use reaper::*;
pub use schedule::*;
pub use wakeup::*;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backoff::{Backoff, BackoffStrategy, Jitter};
use crate::clock::{Clock, ManualClock};
use crate::job::{new_job_id, Job, JobId, LeaseToken, NewJob};
use crate::store::{JobFilter, JobStore, PageRequest, PickRequest};
use crate::trace::TraceContext;

const SECOND: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(60);

/// Generates one `#[tokio::test]` per conformance case for a store factory
/// `async fn(Arc<ManualClock>) -> Arc<dyn JobStore>`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@list @cases $make);
    };
    // The case list, handed to the arm `$arm` (`@cases $make` or `@names`): the one place that
    // names every case.
    (@list @$arm:ident $($arg:tt)*) => {
        $crate::store_conformance_tests! {@$arm $($arg)*;
            // enqueue.rs
            enqueue_then_get,
            enqueue_without_run_at_uses_store_clock,
            idempotent_enqueue_returns_the_same_job,
            enqueue_many_is_all_or_nothing,
            enqueue_many_returns_the_stored_jobs,
            trace_context_round_trips_and_survives_retries,
            // quota.rs
            quota_is_exact_under_concurrent_enqueues,
            quota_counts_only_unfinished_jobs,
            retry_counts_against_the_quota,
            quota_is_exact_under_concurrent_enqueues_and_retries,
            // pick.rs
            lease_due_is_earliest_deadline_first,
            scheduled_jobs_join_the_pick_when_due,
            lease_due_respects_the_cap,
            concurrent_lease_due_never_exceeds_the_cap,
            // deadline.rs
            deadline_rules_per_transition,
            a_past_run_at_gets_its_deadline_from_now,
            // lease.rs
            dispatch_claim_heartbeat_complete,
            batch_claim_and_complete_match_one_by_one,
            fail_retries_with_backoff_then_dies,
            release_returns_the_job_without_penalty,
            // fencing.rs
            stale_tokens_change_nothing,
            // reaper.rs
            reaper_returns_expired_dispatches_without_an_attempt,
            reaper_counts_expired_runs_as_attempts,
            unsent_dispatches_go_back_at_once,
            counts_and_prune,
            // backlog.rs
            backlog_counts_due_pending_jobs_and_the_oldest,
            // cancel_retry.rs
            cancel_follows_the_state_table,
            running_cancel_is_cooperative,
            retry_follows_the_state_table,
            // list.rs
            keyset_pagination_returns_every_job_exactly_once,
            list_filters,
            list_leaves_payloads_out_unless_asked,
            list_byte_budget_cuts_pages_and_continues,
            list_scan_bound_walks_sparse_filters_exactly_once,
            // wakeup.rs
            wakeups_on_due_enqueue_and_finish,
            // pause.rs
            a_paused_use_case_or_tenant_is_passed_over_by_the_pick,
            a_paused_scope_still_takes_enqueues_cancels_and_claims,
            resuming_wakes_the_scheduler,
            // rate.rs
            a_rate_limited_tenant_starts_its_burst_then_its_rate,
            an_every_tenant_limit_gives_each_tenant_its_own_bucket,
            changed_rate_limits_apply_to_jobs_already_enqueued,
            rate_limits_hold_under_concurrent_picks,
            pruning_keeps_the_buckets_that_have_not_refilled,
            retried_jobs_come_under_a_limit_set_after_they_finished,
            // expiry.rs
            a_job_set_to_expire_does_not_start_after_its_deadline,
            expiry_holds_while_a_job_waits_for_a_pause_or_capacity,
            a_late_claim_expires_the_job_instead_of_running_it,
            a_job_released_after_its_deadline_expires_instead_of_restarting,
            // schedule.rs
            schedules_are_created_read_updated_and_deleted,
            config_sync_replaces_config_schedules_and_keeps_api_ones,
            firing_a_slot_twice_makes_one_job,
            concurrent_fires_of_one_slot_make_one_job,
            a_full_quota_skips_the_slot_and_the_schedule_advances,
            fair_share_splits_turns_by_weight,
            a_flooder_queues_behind_its_own_jobs,
            each_turn_goes_to_the_tenants_earliest_deadline,
            idle_paused_and_scheduled_tenants_bank_no_turns,
            a_use_case_without_fair_share_is_plain_edf,
            a_retried_job_takes_its_tenants_next_turn,
            concurrent_enqueues_of_a_tenant_take_distinct_turns,
            a_failure_without_backoff_is_not_a_free_turn,
            a_retry_while_paused_banks_no_turns,
            rate_limited_turns_move_the_clock,
            // predict.rs
            queue_positions_follow_the_pick_order,
            queue_position_counts_in_flight_bounds_and_reads_the_drain_rate,
            paused_and_scheduled_jobs_hold_no_place,
            // activity.rs
            activity_counts_finished_jobs_and_deadlines_per_minute,
            activity_examines_a_bounded_number_of_jobs,
        }
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        mod store_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    $crate::testkit::store::$case($make).await;
                }
            )+
        }
    };
    // The listed case names, as an array of `&str` (for the test that keeps the list complete).
    (@names; $($case:ident),+ $(,)?) => {
        [$(stringify!($case)),+]
    };
}

/// A factory for the suite: `make(clock)` returns a fresh, empty store that reads time from
/// `clock`. Any `async fn(Arc<ManualClock>) -> Arc<dyn JobStore>` (or async closure of that
/// shape) is one.
pub trait MakeStore: AsyncFn(Arc<ManualClock>) -> Arc<dyn JobStore> {}

impl<F> MakeStore for F where F: AsyncFn(Arc<ManualClock>) -> Arc<dyn JobStore> {}

/// A fresh store and its clock.
pub struct Fixture {
    pub store: Arc<dyn JobStore>,
    pub clock: Arc<ManualClock>,
}

/// A new job of `tenant` in `use_case`, due now (store clock), 60 s tolerance, 3 attempts.
pub fn new_job(tenant: &str, use_case: &str) -> NewJob {
    NewJob {
        id: new_job_id(),
        tenant_id: tenant.to_owned(),
        use_case: use_case.to_owned(),
        kind: "test_kind".to_owned(),
        payload: json!({"n": 1, "nested": {"list": [1, 2, 3], "text": "héllo"}}),
        priority: 0,
        max_attempts: 3,
        backoff: Backoff {
            strategy: BackoffStrategy::Linear,
            base: Duration::from_millis(1500),
            cap: Duration::from_secs(600),
            jitter: Jitter::Equal,
        },
        run_at: None,
        delay_tolerance: Duration::from_secs(60),
        expire_at_deadline: false,
        timeout: Duration::from_secs(30),
        idempotency_key: None,
        quota: None,
        fair_weight: Some(1),
        trace_context: None,
    }
}

/// A pick of up to `n` due jobs under a cap of `n`, with the suite's dispatch lease (a case that
/// needs the cap and the batch to differ spells the [`PickRequest`] out).
fn pick(n: u32) -> PickRequest {
    PickRequest {
        cap: n,
        limit: n,
        lease: LEASE,
    }
}

/// A trace context with a `tracestate`, distinct per `n`.
pub fn trace_context(n: u8) -> TraceContext {
    TraceContext::from_parts([n.max(1); 16], [0x5a; 8], 1)
        .unwrap()
        .with_tracestate(&format!("vendor=v{n},other=x"))
}

impl Fixture {
    /// A fresh store from `make`, reading time from a new manual clock.
    pub async fn new(make: impl MakeStore) -> Fixture {
        let clock = Arc::new(ManualClock::default());
        let store = make(clock.clone()).await;
        Fixture { store, clock }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    async fn add(&self, job: NewJob) -> Job {
        self.store.enqueue(job).await.unwrap().job
    }

    async fn due(&self, tenant: &str, use_case: &str) -> Job {
        self.add(new_job(tenant, use_case)).await
    }

    async fn get(&self, id: JobId) -> Job {
        self.store.get(id).await.unwrap().expect("job exists")
    }

    /// How many of `tenant`'s jobs in `use_case` are unfinished (count against its quota).
    async fn unfinished(&self, tenant: &str, use_case: &str) -> usize {
        let filter = JobFilter {
            tenant_id: Some(tenant.to_owned()),
            use_case: Some(use_case.to_owned()),
            ..JobFilter::default()
        };
        let page = PageRequest::new(None, 10_000);
        let jobs = self.store.list(&filter, page).await.unwrap().jobs;
        jobs.iter()
            .filter(|j| j.status.counts_against_quota())
            .count()
    }

    async fn dispatch_one(&self, use_case: &str) -> (JobId, LeaseToken) {
        let leased = self
            .store
            .lease_due(
                use_case,
                PickRequest {
                    cap: 1000,
                    limit: 1,
                    lease: LEASE,
                },
            )
            .await
            .unwrap();
        assert_eq!(leased.len(), 1, "expected one due job in {use_case}");
        (leased[0].job_id, leased[0].lease_token)
    }

    /// Enqueues, dispatches and claims a job: returns it running.
    async fn running(&self, tenant: &str, use_case: &str) -> (Job, LeaseToken) {
        let job = self.due(tenant, use_case).await;
        let leased = self.store.lease_due(use_case, pick(1000)).await.unwrap();
        let d = leased.iter().find(|d| d.job_id == job.id).expect("leased");
        let claimed = self
            .store
            .claim(job.id, d.lease_token, LEASE)
            .await
            .unwrap();
        (claimed, d.lease_token)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `pub async fn` of the suite's files is a case taking `make: impl MakeStore`, and the
    /// macro lists exactly those cases: a case cannot be written and left out of the backends'
    /// runs.
    #[test]
    fn every_case_of_the_suite_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testkit/store");
        let mut defined = BTreeSet::new();
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let source = std::fs::read_to_string(&path).unwrap();
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let (name, args) = rest.split_once('(').unwrap();
                    assert!(
                        args.starts_with("make: impl MakeStore)"),
                        "{}: `{name}` is public and async but not a case",
                        path.display()
                    );
                    assert!(defined.insert(name.to_owned()), "`{name}` defined twice");
                }
            }
        }
        assert!(files > 1, "the suite's files were found in {dir}");
        let listed: BTreeSet<String> = crate::store_conformance_tests!(@list @names)
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(defined, listed);
    }
}

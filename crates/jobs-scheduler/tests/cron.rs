//! The scheduler's cron role over the in-memory store with a manual clock: configured schedules
//! are written on sync, due slots fire once each, two leaders racing for a slot make one job,
//! and missed slots follow the policy.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use jobs_core::memory::MemoryStore;
use jobs_core::schedule::{JobTemplate, MissedPolicy, NewSchedule, ScheduleSource};
use jobs_core::{
    ApiStore, Clock, JobFilter, JobService, ManualClock, PageRequest, PlatformConfig,
    ScheduleStore, TenantScope,
};
use jobs_scheduler::Cron;
use serde_json::json;

fn every_minute(name: &str, missed: MissedPolicy) -> NewSchedule {
    NewSchedule {
        name: name.into(),
        cron: "0 * * * * *".into(),
        timezone: "UTC".into(),
        template: JobTemplate::new("acme", "notifications", "send_email", json!({"n": 1})),
        missed,
    }
}

struct World {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    platform: Arc<PlatformConfig>,
}

impl World {
    fn new() -> World {
        let clock = Arc::new(ManualClock::default());
        World {
            store: Arc::new(MemoryStore::new(clock.clone())),
            clock,
            platform: Arc::new(PlatformConfig::default()),
        }
    }

    fn cron(&self) -> Cron {
        Cron::new(self.store.clone(), self.platform.clone()).with_clock(self.clock.clone())
    }

    async fn jobs(&self) -> Vec<jobs_core::Job> {
        let mut jobs = self
            .store
            .list(&JobFilter::default(), PageRequest::new(None, 1000))
            .await
            .unwrap()
            .jobs;
        jobs.sort_by_key(|j| (j.run_at, j.tenant_id.clone()));
        jobs
    }
}

#[tokio::test]
async fn configured_schedules_fire_once_per_slot() {
    let w = World::new();
    let cron = w
        .cron()
        .with_configured(vec![every_minute("cfg", MissedPolicy::Skip)]);
    assert_eq!(cron.sync_config().await.unwrap(), 1);
    let s = w.store.get_schedule("cfg").await.unwrap().unwrap();
    assert_eq!(s.source, ScheduleSource::Config);
    let start = w.clock.now();
    assert_eq!(s.next_run_at, start + chrono::Duration::minutes(1));

    // Not due yet.
    let report = cron.fire_due().await.unwrap();
    assert_eq!(report.created, 0);
    assert_eq!(report.next_run_at, Some(s.next_run_at));

    // Due: one job, at the slot, with the slot's key; firing again changes nothing.
    w.clock.advance(Duration::from_secs(61));
    let report = cron.fire_due().await.unwrap();
    assert_eq!(report.created, 1);
    assert_eq!(
        report.next_run_at,
        Some(start + chrono::Duration::minutes(2))
    );
    assert_eq!(cron.fire_due().await.unwrap().created, 0);
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].run_at, s.next_run_at);
    assert_eq!(
        jobs[0].idempotency_key.as_deref(),
        Some("schedule:cfg:2030-01-01T00:01:00Z")
    );

    // The configuration drops it: the sync deletes it, and nothing fires any more.
    let cron = w.cron().with_configured(Vec::new());
    cron.sync_config().await.unwrap();
    assert!(w.store.schedules().await.unwrap().is_empty());
}

#[tokio::test]
async fn two_leaders_racing_for_a_slot_make_one_job() {
    let w = World::new();
    let service = JobService::new(w.store.clone(), w.platform.clone()).with_clock(w.clock.clone());
    service
        .create_schedule(every_minute("race", MissedPolicy::Skip), &TenantScope::All)
        .await
        .unwrap();
    w.clock.advance(Duration::from_secs(60));
    let (a, b) = (w.cron(), w.cron());
    let (ra, rb) = tokio::join!(a.fire_due(), b.fire_due());
    assert_eq!(ra.unwrap().created + rb.unwrap().created, 1);
    assert_eq!(w.jobs().await.len(), 1);
}

#[tokio::test]
async fn missed_slots_are_skipped_or_caught_up() {
    let w = World::new();
    let service = JobService::new(w.store.clone(), w.platform.clone()).with_clock(w.clock.clone());
    let mut skip = every_minute("skip", MissedPolicy::Skip);
    skip.template.delay_tolerance_seconds = Some(30.0);
    let mut catch_up = every_minute("catch-up", MissedPolicy::CatchUp { max: 2 });
    catch_up.template.delay_tolerance_seconds = Some(30.0);
    catch_up.template.tenant_id = "globex".into();
    for s in [skip, catch_up] {
        service.create_schedule(s, &TenantScope::All).await.unwrap();
    }
    // Ten minutes and ten seconds with no leader: slots 1..10 are due, only 10 is in its window.
    w.clock.advance(Duration::from_secs(610));
    let report = w.cron().fire_due().await.unwrap();
    assert_eq!(report.created, 1 + 3);
    let tenants: Vec<(String, String)> = w
        .jobs()
        .await
        .into_iter()
        .map(|j| (j.tenant_id, j.run_at.format("%H:%M").to_string()))
        .collect();
    assert_eq!(
        tenants,
        vec![
            ("globex".to_owned(), "00:08".to_owned()),
            ("globex".to_owned(), "00:09".to_owned()),
            ("acme".to_owned(), "00:10".to_owned()),
            ("globex".to_owned(), "00:10".to_owned()),
        ]
    );
    assert_eq!(
        w.store
            .get_schedule("skip")
            .await
            .unwrap()
            .unwrap()
            .next_run_at,
        w.clock.now() + chrono::Duration::seconds(50)
    );
}

#[tokio::test]
async fn a_full_quota_skips_the_slot_and_the_schedule_goes_on() {
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let platform =
        Arc::new(PlatformConfig::default().with_quotas(
            jobs_core::QuotaConfig::unlimited().with_limit("acme", "notifications", 1),
        ));
    let service = JobService::new(store.clone(), platform.clone()).with_clock(clock.clone());
    service
        .create_schedule(every_minute("q", MissedPolicy::Skip), &TenantScope::All)
        .await
        .unwrap();
    let cron = Cron::new(store.clone(), platform).with_clock(clock.clone());
    clock.advance(Duration::from_secs(60));
    assert_eq!(cron.fire_due().await.unwrap().created, 1);
    // The first job is still pending: the quota of one is full at the next slot.
    clock.advance(Duration::from_secs(60));
    let report = cron.fire_due().await.unwrap();
    assert_eq!((report.created, report.skipped), (0, 1));
    assert_eq!(
        store.get_schedule("q").await.unwrap().unwrap().next_run_at,
        clock.now() + chrono::Duration::minutes(1)
    );
}

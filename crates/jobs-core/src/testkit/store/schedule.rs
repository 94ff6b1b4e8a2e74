//! Cron schedules: create/read/update/delete, the configuration sync, and the fenced firing that
//! gives each slot exactly one job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::PlatformConfig;
use crate::job::NewJob;
use crate::schedule::{slot_job, JobTemplate, MissedPolicy, ScheduleDraft, ScheduleSource};
use crate::store::JobFilter;
use crate::store::PageRequest;

use super::{Fixture, MakeStore};

fn template(tenant: &str) -> JobTemplate {
    JobTemplate::new(
        tenant,
        "notifications",
        "send_email",
        json!({"to": "x@y.z"}),
    )
}

fn draft(name: &str, cron: &str, next: DateTime<Utc>, source: ScheduleSource) -> ScheduleDraft {
    ScheduleDraft {
        name: name.to_owned(),
        cron: cron.to_owned(),
        timezone: "UTC".to_owned(),
        template: template("acme"),
        missed: MissedPolicy::Skip,
        source,
        next_run_at: next,
    }
}

fn slot_jobs(
    name: &str,
    slots: &[DateTime<Utc>],
    tenant: &str,
    quota: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<NewJob> {
    slots
        .iter()
        .map(|s| {
            let mut job =
                slot_job(name, &template(tenant), *s, &PlatformConfig::default(), now).unwrap();
            job.quota = quota;
            job
        })
        .collect()
}

async fn jobs_of(f: &Fixture, tenant: &str) -> Vec<crate::job::Job> {
    let filter = JobFilter {
        tenant_id: Some(tenant.to_owned()),
        ..JobFilter::default()
    };
    f.store
        .list(&filter, PageRequest::new(None, 1000))
        .await
        .unwrap()
        .jobs
}

pub async fn schedules_are_created_read_updated_and_deleted(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let now = f.now();
    let next = now + chrono::Duration::hours(1);
    let created = f
        .store
        .create_schedule(draft("hourly", "0 * * * *", next, ScheduleSource::Api))
        .await
        .unwrap()
        .expect("created");
    assert_eq!(created.name, "hourly");
    assert_eq!(created.next_run_at, next);
    assert_eq!(created.source, ScheduleSource::Api);
    assert_eq!(created.created_at, now);
    assert_eq!(created.template, template("acme"));
    assert_eq!(
        f.store.get_schedule("hourly").await.unwrap(),
        Some(created.clone())
    );
    // A name is unique: a second create changes nothing.
    let mut other = draft("hourly", "*/5 * * * *", next, ScheduleSource::Api);
    other.template.kind = "other".into();
    assert_eq!(f.store.create_schedule(other).await.unwrap(), None);
    assert_eq!(
        f.store.get_schedule("hourly").await.unwrap(),
        Some(created.clone())
    );

    // An update with the same cron and zone keeps next_run_at; a new cron takes the draft's.
    f.clock.advance(Duration::from_secs(10));
    let mut same_cron = draft(
        "hourly",
        "0 * * * *",
        next + chrono::Duration::hours(5),
        ScheduleSource::Api,
    );
    same_cron.template.payload = json!({"to": "new@y.z"});
    same_cron.missed = MissedPolicy::CatchUp { max: 3 };
    let updated = f.store.update_schedule(same_cron).await.unwrap().unwrap();
    assert_eq!(updated.next_run_at, next, "kept");
    assert_eq!(updated.template.payload, json!({"to": "new@y.z"}));
    assert_eq!(updated.missed, MissedPolicy::CatchUp { max: 3 });
    assert_eq!(updated.created_at, now);
    assert_eq!(updated.updated_at, f.now());
    let new_next = next + chrono::Duration::minutes(5);
    let recron = f
        .store
        .update_schedule(draft(
            "hourly",
            "*/5 * * * *",
            new_next,
            ScheduleSource::Api,
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recron.next_run_at, new_next);
    assert_eq!(recron.cron, "*/5 * * * *");
    assert_eq!(
        f.store
            .update_schedule(draft("missing", "0 * * * *", next, ScheduleSource::Api))
            .await
            .unwrap(),
        None
    );

    f.store
        .create_schedule(draft("a-first", "0 * * * *", next, ScheduleSource::Api))
        .await
        .unwrap()
        .unwrap();
    let names: Vec<String> = f
        .store
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["a-first", "hourly"], "listed by name");

    assert!(f.store.delete_schedule("hourly").await.unwrap());
    assert!(!f.store.delete_schedule("hourly").await.unwrap());
    assert_eq!(f.store.get_schedule("hourly").await.unwrap(), None);
}

pub async fn config_sync_replaces_config_schedules_and_keeps_api_ones(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let next = f.now() + chrono::Duration::hours(1);
    f.store
        .create_schedule(draft("api-one", "0 * * * *", next, ScheduleSource::Api))
        .await
        .unwrap()
        .unwrap();
    f.store
        .sync_config_schedules(vec![
            draft("cfg-a", "0 * * * *", next, ScheduleSource::Config),
            draft("cfg-b", "0 * * * *", next, ScheduleSource::Config),
        ])
        .await
        .unwrap();
    let all = f.store.schedules().await.unwrap();
    let summary: Vec<(String, ScheduleSource)> =
        all.iter().map(|s| (s.name.clone(), s.source)).collect();
    assert_eq!(
        summary,
        vec![
            ("api-one".to_owned(), ScheduleSource::Api),
            ("cfg-a".to_owned(), ScheduleSource::Config),
            ("cfg-b".to_owned(), ScheduleSource::Config),
        ]
    );
    // Again, without cfg-b, with cfg-a unchanged (its next_run_at stays) and a name the API had
    // (the configuration takes it over).
    let later = next + chrono::Duration::hours(3);
    f.store
        .sync_config_schedules(vec![
            draft("cfg-a", "0 * * * *", later, ScheduleSource::Config),
            draft("api-one", "*/5 * * * *", later, ScheduleSource::Config),
        ])
        .await
        .unwrap();
    let all = f.store.schedules().await.unwrap();
    let summary: Vec<(String, ScheduleSource, DateTime<Utc>)> = all
        .iter()
        .map(|s| (s.name.clone(), s.source, s.next_run_at))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api-one".to_owned(), ScheduleSource::Config, later),
            ("cfg-a".to_owned(), ScheduleSource::Config, next),
        ]
    );
    // An empty configuration removes configured schedules only.
    f.store
        .create_schedule(draft("api-two", "0 * * * *", next, ScheduleSource::Api))
        .await
        .unwrap()
        .unwrap();
    f.store.sync_config_schedules(Vec::new()).await.unwrap();
    let names: Vec<String> = f
        .store
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["api-two"]);
}

pub async fn firing_a_slot_twice_makes_one_job(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let now = f.now();
    let slot = now;
    let next = now + chrono::Duration::minutes(1);
    f.store
        .create_schedule(draft("minutely", "* * * * *", slot, ScheduleSource::Api))
        .await
        .unwrap()
        .unwrap();
    let fired = f
        .store
        .fire(
            "minutely",
            slot,
            slot_jobs("minutely", &[slot], "acme", None, now),
            next,
        )
        .await
        .unwrap();
    assert!(fired.advanced);
    assert_eq!(fired.created, 1);
    let s = f.store.get_schedule("minutely").await.unwrap().unwrap();
    assert_eq!(s.next_run_at, next);
    // A second leader that read the same next_run_at: nothing happens.
    let again = f
        .store
        .fire(
            "minutely",
            slot,
            slot_jobs("minutely", &[slot], "acme", None, now),
            next,
        )
        .await
        .unwrap();
    assert!(!again.advanced);
    assert_eq!(again.created, 0);
    let jobs = jobs_of(&f, "acme").await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].run_at, slot);
    assert_eq!(
        jobs[0].idempotency_key.as_deref(),
        Some(crate::schedule::slot_key("minutely", slot).as_str())
    );
    // A fire of a slot whose job exists (its key) advances without a second job.
    f.store
        .update_schedule(draft("minutely", "*/1 * * * *", slot, ScheduleSource::Api))
        .await
        .unwrap()
        .unwrap();
    let dup = f
        .store
        .fire(
            "minutely",
            slot,
            slot_jobs("minutely", &[slot], "acme", None, now),
            next,
        )
        .await
        .unwrap();
    assert!(dup.advanced);
    assert_eq!((dup.created, dup.duplicates), (0, 1));
    assert_eq!(jobs_of(&f, "acme").await.len(), 1);
    // Unknown schedules fire nothing.
    let gone = f
        .store
        .fire(
            "nope",
            slot,
            slot_jobs("nope", &[slot], "acme", None, now),
            next,
        )
        .await
        .unwrap();
    assert!(!gone.advanced);
    assert!(jobs_of(&f, "acme").await.len() == 1);
}

pub async fn concurrent_fires_of_one_slot_make_one_job(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let now = f.now();
    let next = now + chrono::Duration::seconds(1);
    f.store
        .create_schedule(draft("race", "* * * * * *", now, ScheduleSource::Api))
        .await
        .unwrap()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = f.store.clone();
        let jobs = slot_jobs("race", &[now], "acme", None, now);
        tasks.push(tokio::spawn(async move {
            store.fire("race", now, jobs, next).await.unwrap()
        }));
    }
    let mut advanced = 0;
    for t in tasks {
        if t.await.unwrap().advanced {
            advanced += 1;
        }
    }
    assert_eq!(advanced, 1, "exactly one firing wins the slot");
    assert_eq!(jobs_of(&f, "acme").await.len(), 1);
}

pub async fn a_full_quota_skips_the_slot_and_the_schedule_advances(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let now = f.now();
    let mut d = draft("quota", "* * * * *", now, ScheduleSource::Api);
    d.template = template("full");
    f.store.create_schedule(d).await.unwrap().unwrap();
    // The tenant holds one unfinished job under a quota of one.
    let mut first = super::new_job("full", "notifications");
    first.quota = Some(1);
    f.store.enqueue(first).await.unwrap();
    let next = now + chrono::Duration::minutes(1);
    let fired = f
        .store
        .fire(
            "quota",
            now,
            slot_jobs("quota", &[now], "full", Some(1), now),
            next,
        )
        .await
        .unwrap();
    assert!(fired.advanced);
    assert_eq!((fired.created, fired.over_quota), (0, 1));
    assert_eq!(
        f.store
            .get_schedule("quota")
            .await
            .unwrap()
            .unwrap()
            .next_run_at,
        next
    );
    assert_eq!(jobs_of(&f, "full").await.len(), 1);
}

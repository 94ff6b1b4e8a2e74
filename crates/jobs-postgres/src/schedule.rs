//! The [`ScheduleStore`] on PostgreSQL: the `schedules` table (migration 7) and the fenced
//! firing of a slot — the advance of `next_run_at` and the slot's jobs in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs_core::schedule::{MissedPolicy, Schedule, ScheduleDraft, ScheduleSource};
use jobs_core::{EnqueueError, Fired, NewJob, ScheduleStore, StoreError};
use tokio_postgres::Row;

use crate::enqueue::{self, Db};
use crate::error::{self, Op};
use crate::store::{read_committed, PgStore};

const COLUMNS: &str =
    "name, cron, timezone, template, missed, source, next_run_at, created_at, updated_at";

/// Inserts a schedule unless the name is taken ($1 now or NULL for the database's).
const INSERT: &str = "INSERT INTO __SCHEMA__.schedules \
     (name, cron, timezone, template, missed, source, next_run_at, created_at, updated_at) \
     VALUES ($2, $3, $4, $5, $6, $7, $8, COALESCE($1, now()), COALESCE($1, now())) \
     ON CONFLICT (name) DO NOTHING \
     RETURNING name, cron, timezone, template, missed, source, next_run_at, created_at, updated_at";

/// Replaces a schedule's definition; `next_run_at` is kept when cron and zone are unchanged.
const UPDATE: &str = "UPDATE __SCHEMA__.schedules SET \
     next_run_at = CASE WHEN cron = $3 AND timezone = $4 THEN next_run_at ELSE $8 END, \
     cron = $3, timezone = $4, template = $5, missed = $6, source = $7, \
     updated_at = COALESCE($1, now()) \
     WHERE name = $2 \
     RETURNING name, cron, timezone, template, missed, source, next_run_at, created_at, updated_at";

/// Creates or replaces a configured schedule (as UPDATE for an existing one).
const UPSERT: &str = "INSERT INTO __SCHEMA__.schedules \
     (name, cron, timezone, template, missed, source, next_run_at, created_at, updated_at) \
     VALUES ($2, $3, $4, $5, $6, $7, $8, COALESCE($1, now()), COALESCE($1, now())) \
     ON CONFLICT (name) DO UPDATE SET \
     next_run_at = CASE WHEN schedules.cron = EXCLUDED.cron AND schedules.timezone = EXCLUDED.timezone \
         THEN schedules.next_run_at ELSE EXCLUDED.next_run_at END, \
     cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, template = EXCLUDED.template, \
     missed = EXCLUDED.missed, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at";

/// The fence: advances only from the value the leader read.
const ADVANCE: &str = "UPDATE __SCHEMA__.schedules SET next_run_at = $3 \
     WHERE name = $1 AND next_run_at = $2";

fn render(store: &PgStore, sql: &str) -> String {
    store.sql.schema.render(sql)
}

fn schedule(row: &Row) -> Result<Schedule, StoreError> {
    let bad = |what: &str, e: String| StoreError::Internal(format!("schedule row: {what}: {e}"));
    let source: String = row
        .try_get("source")
        .map_err(|e| bad("source", e.to_string()))?;
    let template: serde_json::Value = row
        .try_get("template")
        .map_err(|e| bad("template", e.to_string()))?;
    let missed: serde_json::Value = row
        .try_get("missed")
        .map_err(|e| bad("missed", e.to_string()))?;
    let get = |e: tokio_postgres::Error| error::pg(&e);
    Ok(Schedule {
        name: row.try_get("name").map_err(get)?,
        cron: row.try_get("cron").map_err(get)?,
        timezone: row.try_get("timezone").map_err(get)?,
        template: serde_json::from_value(template).map_err(|e| bad("template", e.to_string()))?,
        missed: serde_json::from_value::<MissedPolicy>(missed)
            .map_err(|e| bad("missed", e.to_string()))?,
        source: ScheduleSource::parse(&source).ok_or_else(|| bad("source", source.clone()))?,
        next_run_at: row.try_get("next_run_at").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

/// The parameters $2..$8 of INSERT / UPDATE / UPSERT.
struct Params {
    template: serde_json::Value,
    missed: serde_json::Value,
}

fn params(draft: &ScheduleDraft) -> Result<Params, StoreError> {
    let json = |e: serde_json::Error| StoreError::Internal(format!("schedule to JSON: {e}"));
    Ok(Params {
        template: serde_json::to_value(&draft.template).map_err(json)?,
        missed: serde_json::to_value(draft.missed).map_err(json)?,
    })
}

impl PgStore {
    async fn write_one(
        &self,
        sql: &str,
        draft: &ScheduleDraft,
    ) -> Result<Option<Schedule>, StoreError> {
        let p = params(draft)?;
        let now = self.now();
        let c = self.conn().await?;
        let stmt = c
            .prepare_cached(&render(self, sql))
            .await
            .map_err(|e| error::pg(&e))?;
        let row = c
            .query_opt(
                &stmt,
                &[
                    &now,
                    &draft.name,
                    &draft.cron,
                    &draft.timezone,
                    &p.template,
                    &p.missed,
                    &draft.source.as_str(),
                    &draft.next_run_at,
                ],
            )
            .await
            .map_err(|e| error::pg(&e))?;
        row.as_ref().map(schedule).transpose()
    }
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn create_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        self.write_one(INSERT, &draft).await
    }

    async fn update_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        self.write_one(UPDATE, &draft).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let c = self.conn().await?;
        let sql = render(self, "DELETE FROM __SCHEMA__.schedules WHERE name = $1");
        let n = c.execute(&sql, &[&name]).await.map_err(|e| error::pg(&e))?;
        Ok(n > 0)
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        let c = self.conn().await?;
        let sql = render(
            self,
            &format!("SELECT {COLUMNS} FROM __SCHEMA__.schedules WHERE name = $1"),
        );
        let stmt = c.prepare_cached(&sql).await.map_err(|e| error::pg(&e))?;
        let row = c
            .query_opt(&stmt, &[&name])
            .await
            .map_err(|e| error::pg(&e))?;
        row.as_ref().map(schedule).transpose()
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let c = self.conn().await?;
        let sql = render(
            self,
            &format!("SELECT {COLUMNS} FROM __SCHEMA__.schedules ORDER BY name COLLATE \"C\""),
        );
        let stmt = c.prepare_cached(&sql).await.map_err(|e| error::pg(&e))?;
        let rows = c.query(&stmt, &[]).await.map_err(|e| error::pg(&e))?;
        rows.iter().map(schedule).collect()
    }

    async fn sync_config_schedules(&self, drafts: Vec<ScheduleDraft>) -> Result<(), StoreError> {
        let now = self.now();
        let names: Vec<&str> = drafts.iter().map(|d| d.name.as_str()).collect();
        let mut c = self.conn().await?;
        let pg = |e: tokio_postgres::Error| error::pg(&e);
        let tx = read_committed(&mut c).await.map_err(pg)?;
        let delete = render(
            self,
            "DELETE FROM __SCHEMA__.schedules WHERE source = 'config' AND NOT (name = ANY($1))",
        );
        tx.execute(&delete, &[&names]).await.map_err(pg)?;
        let upsert = tx.prepare(&render(self, UPSERT)).await.map_err(pg)?;
        for draft in &drafts {
            let p = params(draft)?;
            tx.execute(
                &upsert,
                &[
                    &now,
                    &draft.name,
                    &draft.cron,
                    &draft.timezone,
                    &p.template,
                    &p.missed,
                    &ScheduleSource::Config.as_str(),
                    &draft.next_run_at,
                ],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn fire(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        jobs: Vec<NewJob>,
        next: DateTime<Utc>,
    ) -> Result<Fired, StoreError> {
        let now = self.now();
        let mut c = self.conn().await?;
        let pg = |e: tokio_postgres::Error| error::pg(&e);
        let tx = read_committed(&mut c).await.map_err(pg)?;
        // The fence first: a concurrent firing of the same slot waits on the row lock here and
        // then finds next_run_at moved on (READ COMMITTED re-reads the row), so it writes nothing.
        let advanced = tx
            .execute(&render(self, ADVANCE), &[&name, &expected, &next])
            .await
            .map_err(pg)?;
        if advanced == 0 {
            tx.rollback().await.map_err(pg)?;
            return Ok(Fired::default());
        }
        let mut fired = Fired {
            advanced: true,
            ..Fired::default()
        };
        {
            let db = Db {
                client: &*tx,
                cache: Some(&tx.statement_cache),
            };
            for job in &jobs {
                match enqueue::one(&db, &self.sql, now, job, None).await {
                    Ok(e) if e.created => fired.created += 1,
                    Ok(_) => fired.duplicates += 1,
                    Err(Op::Fail(EnqueueError::QuotaExceeded { .. })) => fired.over_quota += 1,
                    Err(Op::Fail(EnqueueError::Store(e))) => return Err(e),
                    Err(Op::Fail(e)) => return Err(StoreError::Internal(e.to_string())),
                    Err(Op::Pg(e)) => return Err(pg(e)),
                }
            }
        }
        tx.commit().await.map_err(pg)?;
        if fired.created > 0 {
            self.wake(true, false);
        }
        Ok(fired)
    }
}

-- async-jobs: cron schedules (periodic jobs).
--
-- One row per schedule. `next_run_at` is the next slot to fire; the scheduler's leader fires a
-- slot with one transaction that advances it only if it still holds the value the leader read
-- (`UPDATE … WHERE name = $1 AND next_run_at = $expected`) and inserts the slot's job, whose
-- idempotency key `schedule:<name>:<slot>` is unique per tenant (jobs_idempotency_idx): a
-- second leader firing the same slot after a failover writes nothing.
--
-- `template` is the job template as JSON (tenant_id, use_case, type, payload, tolerance, …) and
-- `missed` the missed-slot policy ({"policy": "skip"} or {"policy": "catch_up", "max": n}),
-- both checked by the application before they are written. `source` says whether the schedule
-- comes from the configuration (replaced by the leader at start) or from the API.
SET LOCAL lock_timeout = '10s';

CREATE TABLE IF NOT EXISTS __SCHEMA__.schedules (
    name        text        PRIMARY KEY,
    cron        text        NOT NULL,
    timezone    text        NOT NULL,
    template    jsonb       NOT NULL,
    missed      jsonb       NOT NULL,
    source      text        NOT NULL CHECK (source IN ('config', 'api')),
    next_run_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

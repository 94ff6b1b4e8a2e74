-- async-jobs: pause and resume, per use case and per tenant within a use case.
--
-- A row of `pauses` pauses `use_case` for every tenant (tenant_id = '') or for one tenant. The
-- pick leaves paused jobs pending; jobs already dispatched or running finish. Rows survive
-- restarts and every scheduler reads the same table, so a pause holds across processes.
--
-- A paused tenant's unfinished jobs are also marked `held`, and the pick's and the promotion's
-- partial indexes leave held jobs out: a paused tenant with a large backlog at the head of the
-- deadline order costs the pick nothing (it never walks those rows). The pick still checks the
-- pauses table, so a job that escaped the mark (enqueued or retried while the pause committed)
-- waits all the same.
--
-- Locks: ADD COLUMN with a constant default is catalog-only, but it and the index rebuilds take
-- the table's lock; give up rather than queue every other query behind it (run again later).
SET LOCAL lock_timeout = '10s';

CREATE TABLE IF NOT EXISTS __SCHEMA__.pauses (
    use_case text NOT NULL,
    tenant_id text NOT NULL DEFAULT '',
    paused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (use_case, tenant_id)
);

ALTER TABLE __SCHEMA__.jobs ADD COLUMN held boolean NOT NULL DEFAULT false;

DROP INDEX __SCHEMA__.jobs_pick_idx;
CREATE INDEX jobs_pick_idx ON __SCHEMA__.jobs (use_case, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE status = 'pending' AND ready AND NOT held;
DROP INDEX __SCHEMA__.jobs_scheduled_idx;
CREATE INDEX jobs_scheduled_idx ON __SCHEMA__.jobs (use_case, run_at)
    WHERE status = 'pending' AND NOT ready AND NOT held;

-- async-jobs: the EDF pick touches only due jobs, and a job's first start is recorded.
--
-- Before this migration the pick index held every pending job in deadline order and the pick
-- filtered `run_at <= now` row by row, so jobs scheduled for later with short tolerances (a
-- reminder at 09:00 with 60 s of tolerance) sorted ahead of due ones and were walked on every
-- tick. Now a pending job is `ready` once its `run_at` has come: jobs inserted or sent back due are
-- ready at once; jobs scheduled for later (enqueued with a future `run_at`, or a retry waiting out
-- its backoff) wait in `jobs_scheduled_idx` until the pick promotes them (`ready = true`, in
-- `run_at` order, inside the use case's lease transaction). The EDF index holds ready jobs only.
-- `status` stays the one source of truth: `ready` only says which index a pending job sits in.
--
-- `first_started_at` is when the job first started (first claim), never cleared: the deadline
-- (start SLA) is measured once per job, met or missed, at that moment. It is not backfilled (that
-- would rewrite the whole history under this migration's lock): a claim sets it to
-- `coalesce(first_started_at, started_at, now)`, so a job that started before the upgrade, or
-- under an older binary during a rolling deploy, keeps its earlier start and is not counted again.
--
-- Locks: ADD COLUMN with a constant default is a catalog change, but it takes the table's ACCESS
-- EXCLUSIVE lock, held to the end of this transaction (the UPDATE of future pending jobs and two
-- partial-index builds, each a scan of the table). Give up rather than queue every other query
-- behind a lock that cannot be had: the runner then fails and can be run again.
SET LOCAL lock_timeout = '10s';

ALTER TABLE __SCHEMA__.jobs ADD COLUMN ready boolean NOT NULL DEFAULT true;
ALTER TABLE __SCHEMA__.jobs ADD COLUMN first_started_at timestamptz;

-- Pending jobs that are not due yet wait for promotion.
UPDATE __SCHEMA__.jobs SET ready = false WHERE status = 'pending' AND run_at > now();

DROP INDEX __SCHEMA__.jobs_pick_idx;
CREATE INDEX jobs_pick_idx ON __SCHEMA__.jobs (use_case, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE status = 'pending' AND ready;
CREATE INDEX jobs_scheduled_idx ON __SCHEMA__.jobs (use_case, run_at)
    WHERE status = 'pending' AND NOT ready;

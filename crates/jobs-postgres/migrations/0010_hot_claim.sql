-- async-jobs: fewer index entries per job, and a claim and heartbeat that are HOT updates.
--
-- Every UPDATE of a row that changes a column any index refers to (in its key, INCLUDE list or
-- WHERE predicate) writes a new entry into every index whose predicate the new version matches;
-- one that changes none of them can be a heap-only (HOT) update, which writes no index entry at
-- all. Before this migration every index of the pending and in-flight jobs named `status` in its
-- predicate and the reaper's index was keyed by `lease_expires_at`, so each of a job's three
-- transitions (lease, claim, complete) wrote a new version into 3 to 5 indexes.
--
-- Now:
-- - `queue` is where a job stands for the indexes, derived from `status` and `ready` by
--   PostgreSQL itself (a stored generated column: no statement can let it drift): 1 pending
--   until its run_at is promoted, 2 pending and ready, 3 in flight (dispatched or running), 0
--   finished. No index names `status` any more, so dispatched → running keeps `queue` = 3.
-- - `reap_at` is when the reaper next looks at an in-flight job. The lease sets it to the end of
--   the dispatch lease (= `lease_expires_at`); the claim and heartbeats move `lease_expires_at`
--   (the lease itself, which fences and which the API shows) but not `reap_at`. A reaper that
--   finds a job whose lease has not ended moves its `reap_at` to the lease's end instead of
--   reaping it: one extra write per lease period, only for jobs that outlive their dispatch
--   lease.
-- - The in-flight count and the reaper share one index, `jobs_in_flight_idx (use_case,
--   reap_at)`, instead of two.
-- - The quota index's predicate is `finished_at IS NULL`, which is the same set of jobs (checked
--   by a new CHECK) but is not implied by the pick's conditions, so the planner can never walk a
--   tenant's whole backlog through it and sort (seen on a table whose statistics were older than
--   a burst of enqueues).
--
-- So the claim and heartbeats write no index entry; a job's lease writes 4 (primary key, tenant
-- listing, quota, in flight) instead of 5 and its claim none instead of 5.
--
-- Locks: adding a stored generated column rewrites the table under its ACCESS EXCLUSIVE lock
-- (about 1-2 s per million rows on the bench machine), then the indexes are rebuilt under it.
-- The lock waits at most 10 s for running transactions; the rewrite itself is not bounded.
SET LOCAL lock_timeout = '10s';

ALTER TABLE __SCHEMA__.jobs
    ADD COLUMN queue smallint NOT NULL GENERATED ALWAYS AS (
        CASE WHEN status = 'pending' AND ready THEN 2
             WHEN status = 'pending' THEN 1
             WHEN status IN ('dispatched', 'running') THEN 3
             ELSE 0 END) STORED,
    ADD COLUMN reap_at timestamptz;

UPDATE __SCHEMA__.jobs SET reap_at = lease_expires_at WHERE status IN ('dispatched', 'running');

-- A job is unfinished exactly when it has no finish time. Every path of the store already keeps
-- it so; rows written otherwise (by hand) are brought in line first, so that the check holds.
UPDATE __SCHEMA__.jobs SET finished_at = updated_at
    WHERE finished_at IS NULL AND status NOT IN ('pending', 'dispatched', 'running');
UPDATE __SCHEMA__.jobs SET finished_at = NULL
    WHERE finished_at IS NOT NULL AND status IN ('pending', 'dispatched', 'running');
ALTER TABLE __SCHEMA__.jobs ADD CONSTRAINT jobs_finished_at_check
    CHECK ((finished_at IS NULL) = (status IN ('pending', 'dispatched', 'running')));

DROP INDEX __SCHEMA__.jobs_pick_idx;
CREATE INDEX jobs_pick_idx ON __SCHEMA__.jobs (use_case, fair_tag, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE queue = 2 AND NOT held AND NOT limited;

DROP INDEX __SCHEMA__.jobs_tenant_pick_idx;
CREATE INDEX jobs_tenant_pick_idx ON __SCHEMA__.jobs (use_case, limited, tenant_id, deadline_at, priority DESC, id)
    INCLUDE (run_at, fair_tag) WHERE queue = 2 AND NOT held;

DROP INDEX __SCHEMA__.jobs_scheduled_idx;
CREATE INDEX jobs_scheduled_idx ON __SCHEMA__.jobs (use_case, run_at)
    WHERE queue = 1 AND NOT held;

DROP INDEX __SCHEMA__.jobs_expiry_idx;
CREATE INDEX jobs_expiry_idx ON __SCHEMA__.jobs (use_case, deadline_at)
    WHERE queue IN (1, 2) AND expire_at_deadline;

DROP INDEX __SCHEMA__.jobs_lease_idx;
DROP INDEX __SCHEMA__.jobs_in_flight_idx;
CREATE INDEX jobs_in_flight_idx ON __SCHEMA__.jobs (use_case, reap_at)
    WHERE queue = 3;

DROP INDEX __SCHEMA__.jobs_quota_idx;
CREATE INDEX jobs_quota_idx ON __SCHEMA__.jobs (tenant_id, use_case, fair_tag)
    WHERE finished_at IS NULL;

ALTER TABLE __SCHEMA__.jobs SET (fillfactor = 60);

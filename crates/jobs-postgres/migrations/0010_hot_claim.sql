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
-- Locks: adding a stored generated column rewrites the table under its ACCESS EXCLUSIVE lock,
-- then the indexes are rebuilt under it: every enqueue, pick, claim and heartbeat waits until the
-- migration commits (seconds per million rows; run it in a quiet minute, and keep it shorter
-- than the workers' heartbeat lease or expect leases to be reaped and jobs run again, as after
-- any outage). The lock waits at most 10 s for running transactions; the rewrite itself is not
-- bounded.
--
-- During a rolling deploy, processes from before this migration keep working on the new schema:
-- their leases leave `reap_at` due (see below), so the reaper still takes back what they lose;
-- their claims do not move the look earlier, so a lease shorter than 10 s may be reaped up to
-- 10 s late; and their queries name `status`, which no index predicate does any more, so they
-- are slower until they are replaced.
SET LOCAL lock_timeout = '10s';

-- The old indexes go first, so that the updates below do not maintain them.
DROP INDEX __SCHEMA__.jobs_pick_idx;
DROP INDEX __SCHEMA__.jobs_tenant_pick_idx;
DROP INDEX __SCHEMA__.jobs_scheduled_idx;
DROP INDEX __SCHEMA__.jobs_expiry_idx;
DROP INDEX __SCHEMA__.jobs_lease_idx;
DROP INDEX __SCHEMA__.jobs_in_flight_idx;
DROP INDEX __SCHEMA__.jobs_quota_idx;

-- `reap_at` is never NULL: a job leased by a process from before this migration (a rolling
-- deploy) keeps the default, -infinity, or the look of an earlier lease, both already due, so the
-- reaper looks at it at once and moves its look to its lease's end. The fillfactor is set in the
-- same statement, so the rewrite already leaves room on every page.
ALTER TABLE __SCHEMA__.jobs
    ADD COLUMN queue smallint NOT NULL GENERATED ALWAYS AS (
        CASE WHEN status = 'pending' AND ready THEN 2
             WHEN status = 'pending' THEN 1
             WHEN status IN ('dispatched', 'running') THEN 3
             ELSE 0 END) STORED,
    ADD COLUMN reap_at timestamptz NOT NULL DEFAULT '-infinity',
    SET (fillfactor = 60);

UPDATE __SCHEMA__.jobs SET reap_at = coalesce(lease_expires_at, '-infinity')
    WHERE status IN ('dispatched', 'running');

-- A job is unfinished exactly when it has no finish time. Every path of the store already keeps
-- it so; rows written otherwise (by hand) are brought in line first, so that the check holds.
UPDATE __SCHEMA__.jobs SET finished_at = updated_at
    WHERE finished_at IS NULL AND status NOT IN ('pending', 'dispatched', 'running');
UPDATE __SCHEMA__.jobs SET finished_at = NULL
    WHERE finished_at IS NOT NULL AND status IN ('pending', 'dispatched', 'running');
ALTER TABLE __SCHEMA__.jobs ADD CONSTRAINT jobs_finished_at_check
    CHECK ((finished_at IS NULL) = (status IN ('pending', 'dispatched', 'running')));

CREATE INDEX jobs_pick_idx ON __SCHEMA__.jobs (use_case, fair_tag, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE queue = 2 AND NOT held AND NOT limited;

CREATE INDEX jobs_tenant_pick_idx ON __SCHEMA__.jobs (use_case, limited, tenant_id, deadline_at, priority DESC, id)
    INCLUDE (run_at, fair_tag) WHERE queue = 2 AND NOT held;

CREATE INDEX jobs_scheduled_idx ON __SCHEMA__.jobs (use_case, run_at)
    WHERE queue = 1 AND NOT held;

CREATE INDEX jobs_expiry_idx ON __SCHEMA__.jobs (use_case, deadline_at)
    WHERE queue IN (1, 2) AND expire_at_deadline;

CREATE INDEX jobs_in_flight_idx ON __SCHEMA__.jobs (use_case, reap_at)
    WHERE queue = 3;

CREATE INDEX jobs_quota_idx ON __SCHEMA__.jobs (tenant_id, use_case, fair_tag)
    WHERE finished_at IS NULL;

-- Fair-share turns reserved by enqueues (`reserve_tags` in src/sql.rs): a tenant's concurrent
-- enqueues into a fair use case take distinct turns by reserving them here, in a transaction of
-- their own that commits at once (and asynchronously: a reservation lost in a crash can only
-- make two later jobs share a turn), instead of holding the tenant's lock until their insert
-- commits, which serialised every enqueue of a tenant behind the previous one's WAL flush. A
-- reservation counts only while recent (`at`): reserved turns whose jobs never committed stop
-- delaying the tenant after a few seconds. Old rows go with the prune.
CREATE TABLE __SCHEMA__.fair_reserve (
    use_case text NOT NULL,
    tenant_id text NOT NULL,
    last_tag double precision NOT NULL,
    reserved double precision NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (use_case, tenant_id)
);

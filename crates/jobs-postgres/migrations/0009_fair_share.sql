-- async-jobs: weighted fair share between the tenants of a use case, inside EDF.
--
-- Every ready pending job carries a virtual tag (`fair_tag`): its tenant's turn. A job that
-- becomes ready (enqueued due, promoted when its run_at comes, retried, or resumed with its
-- tenant) is tagged `greatest(V, the tenant's highest tag) + fair_step`, where `fair_step` is
-- 1 / the tenant's weight and V (`fair_clock`) is the highest tag the use case's pick has handed
-- out. The pick takes turns in tag order and gives each turn to the tenant's earliest deadline;
-- a tenant that sends more than its share queues behind its own tags, one that sends less starts
-- at V. A use case in plain EDF mode tags every job 0 (fair_step 0).
--
-- Jobs from before this migration keep tag 0 and step 1 (weight 1): the backlog they form drains
-- first, in deadline order, and their retries are tagged like any other job.
--
-- Locks: the table's ACCESS EXCLUSIVE lock (from ADD COLUMN with constant defaults,
-- catalog-only) is held until commit; the three index builds scan the table under it (about
-- 0.1 s per million rows each on the bench machine).
SET LOCAL lock_timeout = '10s';

ALTER TABLE __SCHEMA__.jobs
    ADD COLUMN fair_tag double precision NOT NULL DEFAULT 0,
    ADD COLUMN fair_step double precision NOT NULL DEFAULT 1;

-- One row per use case: its virtual clock, and the drain rate the leading scheduler measured
-- (jobs started per second, stored on each backlog refresh) for the predicted start of a job
-- (NULL until a scheduler stored one; the pick writes only `vtime`).
CREATE TABLE IF NOT EXISTS __SCHEMA__.fair_clock (
    use_case text PRIMARY KEY,
    vtime double precision NOT NULL,
    drain_rate double precision,
    drain_rate_at timestamptz
);

-- The pick's turn order (the main lane: tenants without a rate limit).
DROP INDEX __SCHEMA__.jobs_pick_idx;
CREATE INDEX jobs_pick_idx ON __SCHEMA__.jobs (use_case, fair_tag, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE status = 'pending' AND ready AND NOT held AND NOT limited;

-- One tenant's ready jobs in deadline order: the job a turn goes to, and the rate-limited lane
-- (its loose scan over the limited tenants reads the `limited = true` part).
DROP INDEX __SCHEMA__.jobs_limited_pick_idx;
CREATE INDEX jobs_tenant_pick_idx ON __SCHEMA__.jobs (use_case, limited, tenant_id, deadline_at, priority DESC, id)
    INCLUDE (run_at, fair_tag) WHERE status = 'pending' AND ready AND NOT held;

-- Quota counts, and a tenant's highest tag (the last entry of its range).
DROP INDEX __SCHEMA__.jobs_quota_idx;
CREATE INDEX jobs_quota_idx ON __SCHEMA__.jobs (tenant_id, use_case, fair_tag)
    WHERE status IN ('pending', 'dispatched', 'running');

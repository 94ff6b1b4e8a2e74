-- async-jobs: rate limits per tenant per use case (jobs started per second, with a burst).
--
-- `rate_limits` holds the limits in force, written by the scheduler leader from its configuration
-- (tenant_id '' is every tenant without a limit of its own). `rate_buckets` holds each limited
-- tenant's token bucket: the tokens it held at `updated_at`; the pick refills it lazily
-- (per_second × elapsed, at most burst), takes one token per job it leases and writes it back,
-- under the use case's pick lock, so every scheduler shares one bucket per tenant.
--
-- A job whose tenant is limited when it is enqueued (or when the limits change) is marked
-- `limited`: such jobs leave the pick's main index for an index of their own, by tenant, so the
-- pick takes each limited tenant's earliest deadlines up to its tokens without walking a limited
-- backlog that waits at the head of the deadline order.
--
-- Locks: as migration 5 (the column is catalog-only; the index builds lock the table).
SET LOCAL lock_timeout = '10s';

CREATE TABLE IF NOT EXISTS __SCHEMA__.rate_limits (
    use_case text NOT NULL,
    tenant_id text NOT NULL DEFAULT '',
    per_second double precision NOT NULL CHECK (per_second > 0),
    burst integer NOT NULL CHECK (burst >= 1),
    PRIMARY KEY (use_case, tenant_id)
);

CREATE TABLE IF NOT EXISTS __SCHEMA__.rate_buckets (
    use_case text NOT NULL,
    tenant_id text NOT NULL,
    tokens double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (use_case, tenant_id)
);

ALTER TABLE __SCHEMA__.jobs ADD COLUMN limited boolean NOT NULL DEFAULT false;

DROP INDEX __SCHEMA__.jobs_pick_idx;
CREATE INDEX jobs_pick_idx ON __SCHEMA__.jobs (use_case, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE status = 'pending' AND ready AND NOT held AND NOT limited;
CREATE INDEX jobs_limited_pick_idx ON __SCHEMA__.jobs (use_case, tenant_id, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE status = 'pending' AND ready AND NOT held AND limited;

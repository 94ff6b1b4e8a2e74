-- Prototype for issue 16 (BENCHMARKS.md, "Issue 16, fourth session"): shape C. psql -f setup_c.sql, then -f run_c.sql.
-- C: the jobs row is written twice (insert, completion) and never changes an indexed column; a
-- job's flight (dispatched, running) lives in a narrow row of its own, inserted by the lease,
-- updated HOT by the claim and deleted by the completion, which is what fences it; ready jobs
-- are a narrow table (as in B); finished jobs are appended to an unindexed log for pruning.
DROP SCHEMA IF EXISTS pc CASCADE; CREATE SCHEMA pc;
CREATE TABLE pc.jobs (id uuid PRIMARY KEY, tenant_id text NOT NULL, use_case text NOT NULL, payload jsonb, status text NOT NULL,
  fair_tag float8 NOT NULL, deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL,
  attempts int NOT NULL DEFAULT 0, dispatched_at timestamptz, started_at timestamptz, finished_at timestamptz,
  updated_at timestamptz, filler text
) WITH (fillfactor = 60);
CREATE INDEX ON pc.jobs (tenant_id, id DESC);
CREATE TABLE pc.ready (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, fair_tag float8 NOT NULL,
  deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL);
CREATE INDEX ON pc.ready (use_case, fair_tag, deadline_at, priority DESC, id);
CREATE INDEX ON pc.ready (use_case, tenant_id, deadline_at, priority DESC, id);
CREATE TABLE pc.flight (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, token uuid NOT NULL,
  state smallint NOT NULL, attempt int NOT NULL, lease_expires_at timestamptz NOT NULL, reap_at timestamptz NOT NULL,
  dispatched_at timestamptz NOT NULL, started_at timestamptz) WITH (fillfactor = 70);
CREATE INDEX ON pc.flight (use_case, reap_at);
CREATE INDEX ON pc.flight (tenant_id, use_case);
CREATE TABLE pc.finished (finished_at timestamptz NOT NULL, id uuid NOT NULL);
INSERT INTO pc.jobs (id, tenant_id, use_case, payload, status, fair_tag, deadline_at, priority, run_at, updated_at, filler)
SELECT gen_random_uuid(), 't', 'u', '{}', 'pending', g, now() + g * interval '1 ms', 0, now() - interval '1 s', now(), repeat('x', 150) FROM generate_series(1, 50000) g;
INSERT INTO pc.ready SELECT id, use_case, tenant_id, fair_tag, deadline_at, priority, run_at FROM pc.jobs;
VACUUM ANALYZE pc.jobs; VACUUM ANALYZE pc.ready; VACUUM ANALYZE pc.flight; VACUUM ANALYZE pc.finished;
CHECKPOINT;

-- Prototype for issue 16 (BENCHMARKS.md, "Issue 16, third session"): two schemas side by side.
-- psql -f setup.sql, then -f run_a.sql and -f run_b.sql; each prints µs per job of the three transitions.
DROP SCHEMA IF EXISTS pa CASCADE; DROP SCHEMA IF EXISTS pb CASCADE;
CREATE SCHEMA pa; CREATE SCHEMA pb;
-- A: today's shape (the columns that matter, the same indexes and predicates)
CREATE TABLE pa.jobs (id uuid PRIMARY KEY, tenant_id text NOT NULL, use_case text NOT NULL, payload jsonb, status text NOT NULL,
  ready boolean NOT NULL, held boolean NOT NULL DEFAULT false, limited boolean NOT NULL DEFAULT false,
  fair_tag float8 NOT NULL, deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL,
  attempts int NOT NULL DEFAULT 0, lease_token uuid, lease_expires_at timestamptz, reap_at timestamptz NOT NULL DEFAULT '-infinity',
  dispatched_at timestamptz, started_at timestamptz, finished_at timestamptz, updated_at timestamptz, filler text,
  queue smallint GENERATED ALWAYS AS (CASE WHEN status='pending' AND ready THEN 2 WHEN status='pending' THEN 1 WHEN status IN ('dispatched','running') THEN 3 ELSE 0 END) STORED
) WITH (fillfactor = 60);
CREATE INDEX ON pa.jobs (use_case, fair_tag, deadline_at, priority DESC, id) INCLUDE (run_at) WHERE queue = 2 AND NOT held AND NOT limited;
CREATE INDEX ON pa.jobs (use_case, limited, tenant_id, deadline_at, priority DESC, id) INCLUDE (run_at, fair_tag) WHERE queue = 2 AND NOT held;
CREATE INDEX ON pa.jobs (use_case, run_at) WHERE queue = 1 AND NOT held;
CREATE INDEX ON pa.jobs (use_case, reap_at) WHERE queue = 3;
CREATE INDEX ON pa.jobs (tenant_id, use_case, fair_tag) WHERE finished_at IS NULL;
CREATE INDEX ON pa.jobs (tenant_id, id DESC);
CREATE INDEX ON pa.jobs (finished_at) WHERE finished_at IS NOT NULL;
-- B: the jobs row has no index that a transition changes; ready and in-flight jobs are narrow tables
CREATE TABLE pb.jobs (id uuid PRIMARY KEY, tenant_id text NOT NULL, use_case text NOT NULL, payload jsonb, status text NOT NULL,
  fair_tag float8 NOT NULL, deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL,
  attempts int NOT NULL DEFAULT 0, lease_token uuid, lease_expires_at timestamptz,
  dispatched_at timestamptz, started_at timestamptz, finished_at timestamptz, updated_at timestamptz, filler text
) WITH (fillfactor = 60);
CREATE INDEX ON pb.jobs (tenant_id, id DESC);
CREATE TABLE pb.ready (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, fair_tag float8 NOT NULL,
  deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL);
CREATE INDEX ON pb.ready (use_case, fair_tag, deadline_at, priority DESC, id);
CREATE INDEX ON pb.ready (use_case, tenant_id, deadline_at, priority DESC, id);
CREATE TABLE pb.inflight (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, reap_at timestamptz NOT NULL);
CREATE INDEX ON pb.inflight (use_case, reap_at);
CREATE INDEX ON pb.inflight (tenant_id, use_case);
-- 50,000 ready jobs each
INSERT INTO pa.jobs (id, tenant_id, use_case, payload, status, ready, fair_tag, deadline_at, priority, run_at, updated_at, filler)
SELECT gen_random_uuid(), 't', 'u', '{}', 'pending', true, g, now() + g * interval '1 ms', 0, now() - interval '1 s', now(), repeat('x', 150) FROM generate_series(1, 50000) g;
INSERT INTO pb.jobs (id, tenant_id, use_case, payload, status, fair_tag, deadline_at, priority, run_at, updated_at, filler)
SELECT id, tenant_id, use_case, payload, status, fair_tag, deadline_at, priority, run_at, updated_at, filler FROM pa.jobs;
INSERT INTO pb.ready SELECT id, use_case, tenant_id, fair_tag, deadline_at, priority, run_at FROM pb.jobs;
VACUUM ANALYZE pa.jobs; VACUUM ANALYZE pb.jobs; VACUUM ANALYZE pb.ready; VACUUM ANALYZE pb.inflight;
CHECKPOINT;

-- Prototype for issue 16 (BENCHMARKS.md, "Issue 16, fifth session"): shape D. psql -f setup_d.sql, then -f run_d.sql.
-- D: as C, ready and in-flight jobs are narrow tables and finished jobs are appended to an
-- unindexed log, but the jobs row keeps the job's whole state (status, token, lease, attempts):
-- each transition updates it, and since no index of `jobs` names a column that a transition
-- changes, every one of those updates can be HOT. The flight row only serves the cap count, the
-- quota count and the reaper; it is inserted by the lease and deleted by the completion.
DROP SCHEMA IF EXISTS pd CASCADE; CREATE SCHEMA pd;
CREATE TABLE pd.jobs (id uuid PRIMARY KEY, tenant_id text NOT NULL, use_case text NOT NULL, payload jsonb, status text NOT NULL,
  ready boolean NOT NULL, held boolean NOT NULL DEFAULT false, limited boolean NOT NULL DEFAULT false,
  fair_tag float8 NOT NULL, deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL,
  attempts int NOT NULL DEFAULT 0, lease_token uuid, lease_expires_at timestamptz,
  dispatched_at timestamptz, started_at timestamptz, finished_at timestamptz, updated_at timestamptz, filler text
) WITH (fillfactor = 60);
CREATE INDEX ON pd.jobs (tenant_id, id DESC);
CREATE TABLE pd.ready (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, fair_tag float8 NOT NULL,
  deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL, due boolean NOT NULL,
  held boolean NOT NULL DEFAULT false, limited boolean NOT NULL DEFAULT false);
CREATE INDEX ON pd.ready (use_case, fair_tag, deadline_at, priority DESC, id) INCLUDE (run_at) WHERE due AND NOT held AND NOT limited;
CREATE INDEX ON pd.ready (use_case, limited, tenant_id, deadline_at, priority DESC, id) INCLUDE (run_at, fair_tag) WHERE due AND NOT held;
CREATE INDEX ON pd.ready (tenant_id, use_case, fair_tag);
CREATE TABLE pd.flight (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, fair_tag float8 NOT NULL,
  reap_at timestamptz NOT NULL);
CREATE INDEX ON pd.flight (use_case, reap_at);
CREATE INDEX ON pd.flight (tenant_id, use_case, fair_tag);
CREATE TABLE pd.finished (finished_at timestamptz NOT NULL, id uuid NOT NULL);
INSERT INTO pd.jobs (id, tenant_id, use_case, payload, status, ready, fair_tag, deadline_at, priority, run_at, updated_at, filler)
SELECT gen_random_uuid(), 't', 'u', '{}', 'pending', true, g, now() + g * interval '1 ms', 0, now() - interval '1 s', now(), repeat('x', 150) FROM generate_series(1, 50000) g;
INSERT INTO pd.ready SELECT id, use_case, tenant_id, fair_tag, deadline_at, priority, run_at, true FROM pd.jobs;
VACUUM ANALYZE pd.jobs; VACUUM ANALYZE pd.ready; VACUUM ANALYZE pd.flight; VACUUM ANALYZE pd.finished;
CHECKPOINT;

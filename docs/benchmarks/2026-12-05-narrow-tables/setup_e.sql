-- Prototype for issue 16 (BENCHMARKS.md, "Issue 16, fifth session"): shape E. psql -f setup_e.sql, then -f run_e.sql.
-- E: D kept by statement triggers with transition tables: every statement that writes jobs keeps
-- ready, flight and the finished log in step, in the same statement.
DROP SCHEMA IF EXISTS pe CASCADE; CREATE SCHEMA pe;
CREATE TABLE pe.jobs (id uuid PRIMARY KEY, tenant_id text NOT NULL, use_case text NOT NULL, payload jsonb, status text NOT NULL,
  ready boolean NOT NULL, held boolean NOT NULL DEFAULT false, limited boolean NOT NULL DEFAULT false,
  fair_tag float8 NOT NULL, deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL,
  attempts int NOT NULL DEFAULT 0, lease_token uuid, lease_expires_at timestamptz, reap_at timestamptz NOT NULL DEFAULT '-infinity',
  dispatched_at timestamptz, started_at timestamptz, finished_at timestamptz, updated_at timestamptz, filler text,
  queue smallint GENERATED ALWAYS AS (CASE WHEN status='pending' AND ready THEN 2 WHEN status='pending' THEN 1 WHEN status IN ('dispatched','running') THEN 3 ELSE 0 END) STORED
) WITH (fillfactor = 60);
CREATE INDEX ON pe.jobs (tenant_id, id DESC);
CREATE TABLE pe.ready (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, fair_tag float8 NOT NULL,
  deadline_at timestamptz NOT NULL, priority smallint NOT NULL, run_at timestamptz NOT NULL, due boolean NOT NULL,
  held boolean NOT NULL, limited boolean NOT NULL);
CREATE INDEX ready_pick ON pe.ready (use_case, fair_tag, deadline_at, priority DESC, id) INCLUDE (run_at) WHERE due AND NOT held AND NOT limited;
CREATE INDEX ready_tenant_pick ON pe.ready (use_case, limited, tenant_id, deadline_at, priority DESC, id) INCLUDE (run_at, fair_tag) WHERE due AND NOT held;
CREATE INDEX ready_quota ON pe.ready (tenant_id, use_case, fair_tag);
CREATE TABLE pe.flight (id uuid PRIMARY KEY, use_case text NOT NULL, tenant_id text NOT NULL, fair_tag float8 NOT NULL,
  reap_at timestamptz NOT NULL);
CREATE INDEX flight_reap ON pe.flight (use_case, reap_at);
CREATE INDEX flight_quota ON pe.flight (tenant_id, use_case, fair_tag);
CREATE TABLE pe.finished (finished_at timestamptz NOT NULL, id uuid NOT NULL);

CREATE FUNCTION pe.jobs_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH c AS MATERIALIZED (SELECT n.id, n.use_case, n.tenant_id, n.fair_tag, n.deadline_at, n.priority, n.run_at, n.queue AS nq, o.queue AS oq,
          n.held, n.limited, n.reap_at, o.reap_at AS o_reap, n.finished_at, o.finished_at AS o_fin,
          (n.fair_tag, n.deadline_at, n.priority, n.run_at, n.held, n.limited) IS DISTINCT FROM (o.fair_tag, o.deadline_at, o.priority, o.run_at, o.held, o.limited) AS keys
        FROM n JOIN o ON o.id = n.id
        WHERE n.queue <> o.queue OR (n.queue IN (1, 2) AND (n.fair_tag, n.deadline_at, n.priority, n.run_at, n.held, n.limited) IS DISTINCT FROM (o.fair_tag, o.deadline_at, o.priority, o.run_at, o.held, o.limited))
          OR (n.queue = 3 AND n.reap_at <> o.reap_at) OR n.finished_at IS DISTINCT FROM o.finished_at),
    rd AS (DELETE FROM pe.ready r WHERE r.id = ANY (ARRAY(SELECT id FROM c WHERE c.oq IN (1, 2) AND c.nq NOT IN (1, 2)))),
    ri AS (INSERT INTO pe.ready SELECT id, use_case, tenant_id, fair_tag, deadline_at, priority, run_at, nq = 2, held, limited FROM c
           WHERE nq IN (1, 2) AND oq NOT IN (1, 2)),
    ru AS (UPDATE pe.ready r SET fair_tag = c.fair_tag, deadline_at = c.deadline_at, priority = c.priority, run_at = c.run_at,
           due = c.nq = 2, held = c.held, limited = c.limited FROM c WHERE r.id = c.id AND c.nq IN (1, 2) AND c.oq IN (1, 2) AND r.id = ANY (ARRAY(SELECT id FROM c WHERE c.nq IN (1, 2) AND c.oq IN (1, 2)))),
    fd AS (DELETE FROM pe.flight f WHERE f.id = ANY (ARRAY(SELECT id FROM c WHERE c.oq = 3 AND c.nq <> 3))),
    fi AS (INSERT INTO pe.flight SELECT id, use_case, tenant_id, fair_tag, reap_at FROM c WHERE nq = 3 AND oq <> 3),
    fu AS (UPDATE pe.flight f SET reap_at = c.reap_at FROM c WHERE f.id = c.id AND c.nq = 3 AND c.oq = 3 AND c.reap_at <> c.o_reap AND f.id = ANY (ARRAY(SELECT id FROM c WHERE c.nq = 3 AND c.oq = 3 AND c.reap_at <> c.o_reap)))
  INSERT INTO pe.finished SELECT finished_at, id FROM c WHERE finished_at IS NOT NULL AND o_fin IS DISTINCT FROM finished_at;
  RETURN NULL;
END $$;
CREATE TRIGGER jobs_moved AFTER UPDATE ON pe.jobs REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pe.jobs_moved();
CREATE FUNCTION pe.jobs_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO pe.ready SELECT id, use_case, tenant_id, fair_tag, deadline_at, priority, run_at, queue = 2, held, limited FROM n WHERE queue IN (1, 2);
  RETURN NULL;
END $$;
CREATE TRIGGER jobs_added AFTER INSERT ON pe.jobs REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pe.jobs_added();

INSERT INTO pe.jobs (id, tenant_id, use_case, payload, status, ready, fair_tag, deadline_at, priority, run_at, updated_at, filler)
SELECT gen_random_uuid(), 't', 'u', '{}', 'pending', true, g, now() + g * interval '1 ms', 0, now() - interval '1 s', now(), repeat('x', 150) FROM generate_series(1, 50000) g;
VACUUM ANALYZE pe.jobs; VACUUM ANALYZE pe.ready; VACUUM ANALYZE pe.flight; VACUUM ANALYZE pe.finished;
CHECKPOINT;

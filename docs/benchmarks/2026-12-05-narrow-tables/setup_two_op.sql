-- The two-operation queue of the ceiling harness beside the checkout (`../shared/peers/limit/`,
-- its `limit_2step.sql` shape): what a queue that locks a batch with one UPDATE and finishes it
-- with one DELETE writes per job, keeping no history. 50,000 rows, prepared as in setup.sql.
DROP SCHEMA IF EXISTS pq CASCADE; CREATE SCHEMA pq;
CREATE TABLE pq.q (id bigserial PRIMARY KEY, state smallint NOT NULL DEFAULT 0, attempts int NOT NULL DEFAULT 0, payload jsonb, filler text);
CREATE INDEX ON pq.q (id) WHERE state = 0;
INSERT INTO pq.q (payload, filler) SELECT '{}', repeat('x', 150) FROM generate_series(1, 50000);
VACUUM ANALYZE pq.q;
CHECKPOINT;

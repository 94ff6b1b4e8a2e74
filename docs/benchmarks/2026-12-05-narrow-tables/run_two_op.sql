SELECT set_config('synchronous_commit','off',false);
DO $$
DECLARE ids bigint[]; t0 timestamptz; tl float8 := 0; tf float8 := 0; i int;
BEGIN
  FOR i IN 1..100 LOOP
    t0 := clock_timestamp();
    WITH c AS (UPDATE pq.q SET state = 1, attempts = attempts + 1 WHERE id IN (SELECT id FROM pq.q WHERE state = 0 ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED) RETURNING id)
    SELECT array_agg(id) INTO ids FROM c;
    tl := tl + extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    DELETE FROM pq.q WHERE id = ANY (ids);
    tf := tf + extract(epoch FROM clock_timestamp() - t0);
    COMMIT;
  END LOOP;
  RAISE NOTICE 'two-op us/job: lock % delete % total %', round((tl*1e6/50000)::numeric,1), round((tf*1e6/50000)::numeric,1), round(((tl+tf)*1e6/50000)::numeric,1);
END $$;
SELECT count(*) AS left_over FROM pq.q;

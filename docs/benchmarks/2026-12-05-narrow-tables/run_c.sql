SELECT set_config('synchronous_commit','off',false);
DO $$
DECLARE ids uuid[]; toks uuid[]; t0 timestamptz; tl float8 := 0; tc float8 := 0; tf float8 := 0; i int;
BEGIN
  FOR i IN 1..100 LOOP
    t0 := clock_timestamp();
    WITH r AS (DELETE FROM pc.ready WHERE id = ANY (ARRAY(SELECT p.id FROM pc.ready p WHERE p.use_case = 'u'
          ORDER BY p.fair_tag, p.deadline_at, p.priority DESC, p.id LIMIT 500)) RETURNING id, use_case, tenant_id),
      f AS (INSERT INTO pc.flight SELECT id, use_case, tenant_id, gen_random_uuid(), 1, 0, now() + interval '5 min',
          now() + interval '10 s', now(), NULL FROM r RETURNING id, token)
    SELECT array_agg(id), array_agg(token) INTO ids, toks FROM f;
    tl := tl + extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    UPDATE pc.flight f SET state = 2, attempt = f.attempt + 1, started_at = now(), lease_expires_at = now() + interval '1 min'
      FROM unnest(ids, toks) k(id, tok) WHERE f.id = k.id AND f.state = 1 AND f.token = k.tok;
    tc := tc + extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    WITH d AS (DELETE FROM pc.flight f USING unnest(ids, toks) k(id, tok) WHERE f.id = k.id AND f.state = 2 AND f.token = k.tok
          RETURNING f.id, f.attempt, f.dispatched_at, f.started_at),
      u AS (UPDATE pc.jobs j SET status = 'succeeded', attempts = d.attempt, dispatched_at = d.dispatched_at, started_at = d.started_at,
          finished_at = now(), updated_at = now() FROM d WHERE j.id = d.id RETURNING j.id, j.finished_at)
    INSERT INTO pc.finished SELECT finished_at, id FROM u;
    tf := tf + extract(epoch FROM clock_timestamp() - t0);
    COMMIT;
  END LOOP;
  RAISE NOTICE 'C us/job: lease % claim % complete % total %', round((tl*1e6/50000)::numeric,1), round((tc*1e6/50000)::numeric,1), round((tf*1e6/50000)::numeric,1), round(((tl+tc+tf)*1e6/50000)::numeric,1);
END $$;
SELECT status, count(*) FROM pc.jobs GROUP BY 1;
SELECT count(*) AS ready_left, (SELECT count(*) FROM pc.flight) AS flight_left, (SELECT count(*) FROM pc.finished) AS finished FROM pc.ready;
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = 'pc' AND relname IN ('jobs', 'flight') ORDER BY relname;

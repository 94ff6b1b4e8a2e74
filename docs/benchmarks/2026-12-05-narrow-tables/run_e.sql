-- Prototype for issue 16 (BENCHMARKS.md, "Issue 16, fifth session"): shape E, after setup_e.sql.
SELECT set_config('synchronous_commit','off',false);
DO $$
DECLARE ids uuid[]; toks uuid[]; t0 timestamptz; tl float8 := 0; tc float8 := 0; tf float8 := 0; i int;
BEGIN
  FOR i IN 1..100 LOOP
    t0 := clock_timestamp();
    WITH l AS (UPDATE pe.jobs j SET status = 'dispatched', lease_token = gen_random_uuid(), lease_expires_at = now() + interval '5 min',
        reap_at = now() + interval '10 s', dispatched_at = now(), updated_at = now()
      WHERE j.id = ANY (ARRAY(SELECT p.id FROM pe.ready p WHERE p.use_case = 'u' AND p.due AND NOT p.held AND NOT p.limited
        ORDER BY p.fair_tag, p.deadline_at, p.priority DESC, p.id LIMIT 500)) AND j.status = 'pending' RETURNING j.id, j.lease_token)
    SELECT array_agg(id), array_agg(lease_token) INTO ids, toks FROM l;
    tl := tl + extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    UPDATE pe.jobs j SET status = 'running', attempts = j.attempts + 1, started_at = now(), lease_expires_at = now() + interval '1 min', updated_at = now()
      FROM unnest(ids, toks) k(id, tok) WHERE j.id = k.id AND j.status = 'dispatched' AND j.lease_token = k.tok;
    tc := tc + extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    UPDATE pe.jobs j SET status = 'succeeded', lease_token = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
      FROM unnest(ids, toks) k(id, tok) WHERE j.id = k.id AND j.status = 'running' AND j.lease_token = k.tok;
    tf := tf + extract(epoch FROM clock_timestamp() - t0);
    COMMIT;
  END LOOP;
  RAISE NOTICE 'E us/job: lease % claim % complete % total %', round((tl*1e6/50000)::numeric,1), round((tc*1e6/50000)::numeric,1), round((tf*1e6/50000)::numeric,1), round(((tl+tc+tf)*1e6/50000)::numeric,1);
END $$;
SELECT status, count(*) FROM pe.jobs GROUP BY 1;
SELECT count(*) AS ready_left, (SELECT count(*) FROM pe.flight) AS flight_left, (SELECT count(*) FROM pe.finished) AS finished FROM pe.ready;
SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = 'pe' AND relname IN ('jobs', 'flight') ORDER BY relname;

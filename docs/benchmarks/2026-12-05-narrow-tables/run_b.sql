SELECT set_config('synchronous_commit','off',false);
DO $$
DECLARE ids uuid[]; toks uuid[]; t0 timestamptz; tl float8 := 0; tc float8 := 0; tf float8 := 0; i int;
BEGIN
  FOR i IN 1..100 LOOP
    t0 := clock_timestamp();
    WITH r AS (DELETE FROM pb.ready WHERE id = ANY (ARRAY(SELECT p.id FROM pb.ready p WHERE p.use_case = 'u'
          ORDER BY p.fair_tag, p.deadline_at, p.priority DESC, p.id LIMIT 500)) RETURNING id, use_case, tenant_id),
      f AS (INSERT INTO pb.inflight SELECT id, use_case, tenant_id, now() + interval '10 s' FROM r),
      l AS (UPDATE pb.jobs j SET status = 'dispatched', lease_token = gen_random_uuid(), lease_expires_at = now() + interval '5 min',
        dispatched_at = now(), updated_at = now() FROM r WHERE j.id = r.id RETURNING j.id, j.lease_token)
    SELECT array_agg(id), array_agg(lease_token) INTO ids, toks FROM l;
    tl := tl + extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    UPDATE pb.jobs j SET status = 'running', attempts = j.attempts + 1, started_at = now(), lease_expires_at = now() + interval '1 min', updated_at = now()
      FROM unnest(ids, toks) k(id, tok) WHERE j.id = k.id AND j.status = 'dispatched' AND j.lease_token = k.tok;
    tc := tc + extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    WITH d AS (UPDATE pb.jobs j SET status = 'succeeded', lease_token = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
      FROM unnest(ids, toks) k(id, tok) WHERE j.id = k.id AND j.status = 'running' AND j.lease_token = k.tok RETURNING j.id)
    DELETE FROM pb.inflight x USING d WHERE x.id = d.id;
    tf := tf + extract(epoch FROM clock_timestamp() - t0);
    COMMIT;
  END LOOP;
  RAISE NOTICE 'B us/job: lease % claim % complete % total %', round((tl*1e6/50000)::numeric,1), round((tc*1e6/50000)::numeric,1), round((tf*1e6/50000)::numeric,1), round(((tl+tc+tf)*1e6/50000)::numeric,1);
END $$;
SELECT status, count(*) FROM pb.jobs GROUP BY 1;
SELECT count(*) AS ready_left, (SELECT count(*) FROM pb.inflight) AS inflight_left FROM pb.ready;

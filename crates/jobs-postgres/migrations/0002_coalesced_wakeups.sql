-- async-jobs: wake-ups may be coalesced by the store instead of sent by every transaction.
-- NOTIFY takes a database-wide lock at commit, so one NOTIFY per enqueue or completion serialises
-- every commit. A session that sets `async_jobs.notify = 'off'` (the store's own pooled
-- connections do) fires no wake-up trigger; the store then sends its wake-ups itself after its
-- commits, at most one NOTIFY transaction in flight, folding everything that happens meanwhile
-- into the next one. Any other session (your own transactions, `enqueue_in`, manual SQL) keeps
-- the transactional triggers of migration 1.

DROP TRIGGER jobs_notify_insert ON __SCHEMA__.jobs;
DROP TRIGGER jobs_notify_update ON __SCHEMA__.jobs;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON __SCHEMA__.jobs
    FOR EACH ROW WHEN (NEW.run_at <= NEW.created_at
        AND current_setting('async_jobs.notify', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION __SCHEMA__.jobs_notify_due();

CREATE TRIGGER jobs_notify_update AFTER UPDATE OF status ON __SCHEMA__.jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
        AND current_setting('async_jobs.notify', true) IS DISTINCT FROM 'off'
        AND ((NEW.status = 'pending' AND NEW.run_at <= NEW.updated_at)
        OR (OLD.status IN ('dispatched', 'running') AND NEW.status NOT IN ('dispatched', 'running'))))
    EXECUTE FUNCTION __SCHEMA__.jobs_notify_change();

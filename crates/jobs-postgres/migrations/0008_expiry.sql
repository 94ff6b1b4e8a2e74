-- async-jobs: expiry at the deadline (status 'expired', per-job expire_at_deadline).
--
-- A job with `expire_at_deadline` that has not started by its `deadline_at` ends 'expired'
-- instead of running late: the pick of its use case expires the pending ones (walking
-- `jobs_expiry_idx`, which holds only pending jobs that may expire, in deadline order, so a late
-- backlog of jobs that run late costs it nothing), and a claim that comes after the deadline
-- expires the job instead of starting it.
--
-- Locks: the column is catalog-only; the CHECK is replaced NOT VALID (no scan under the table's
-- lock) and validated in the same migration; the index build scans the table under its lock.
SET LOCAL lock_timeout = '10s';

ALTER TABLE __SCHEMA__.jobs ADD COLUMN expire_at_deadline boolean NOT NULL DEFAULT false;

ALTER TABLE __SCHEMA__.jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
ALTER TABLE __SCHEMA__.jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('pending', 'dispatched', 'running', 'succeeded', 'dead', 'cancelled', 'expired')) NOT VALID;
ALTER TABLE __SCHEMA__.jobs VALIDATE CONSTRAINT jobs_status_check;

CREATE INDEX jobs_expiry_idx ON __SCHEMA__.jobs (use_case, deadline_at)
    WHERE status = 'pending' AND expire_at_deadline;

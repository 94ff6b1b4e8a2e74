-- async-jobs: expiry at the deadline (status 'expired', per-job expire_at_deadline).
--
-- A job with `expire_at_deadline` that has not started by its `deadline_at` ends 'expired'
-- instead of running late: the pick of its use case expires the pending ones (walking
-- `jobs_expiry_idx`, which holds only pending jobs that may expire, in deadline order, so a late
-- backlog of jobs that run late costs it nothing), and a claim that comes after the deadline
-- expires the job instead of starting it.
--
-- Locks: the migration holds the table's ACCESS EXCLUSIVE lock (from ADD COLUMN, catalog-only)
-- until it commits. The status CHECK is replaced NOT VALID: new and updated rows are checked,
-- and the existing rows are not scanned (every one of them already passed the narrower check it
-- replaces). The index build scans the table under the lock (about 0.1 s per million rows here).
-- The old CHECK is dropped by its name (PostgreSQL's for migration 1's column constraint),
-- without IF EXISTS: a different name fails the migration instead of leaving the old CHECK to
-- refuse every expiry.
SET LOCAL lock_timeout = '10s';

ALTER TABLE __SCHEMA__.jobs ADD COLUMN expire_at_deadline boolean NOT NULL DEFAULT false;

ALTER TABLE __SCHEMA__.jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE __SCHEMA__.jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('pending', 'dispatched', 'running', 'succeeded', 'dead', 'cancelled', 'expired')) NOT VALID;

CREATE INDEX jobs_expiry_idx ON __SCHEMA__.jobs (use_case, deadline_at)
    WHERE status = 'pending' AND expire_at_deadline;

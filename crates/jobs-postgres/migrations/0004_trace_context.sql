-- async-jobs: the enqueuer's W3C trace context travels with the job.
--
-- `traceparent` holds the validated `00-<trace id>-<parent id>-<flags>` of the request that
-- enqueued the job (its handler's span becomes a child of it), `tracestate` the vendor state that
-- came with it (at most 512 bytes). Both are NULL for jobs enqueued without one and for every job
-- from before this migration.
--
-- Locks: ADD COLUMN without a default is a catalog-only change (no rewrite, no scan), but it takes
-- the table's ACCESS EXCLUSIVE lock for a moment. Give up rather than queue every other query
-- behind a lock that cannot be had: the runner then fails and can be run again.
SET LOCAL lock_timeout = '10s';

ALTER TABLE __SCHEMA__.jobs ADD COLUMN traceparent text, ADD COLUMN tracestate text;

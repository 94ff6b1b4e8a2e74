-- async-jobs: the jobs table, its hot-query indexes and the wake-up triggers.
-- `__SCHEMA__` is replaced by the (validated) schema name before this file runs.

CREATE TABLE __SCHEMA__.jobs (
    id                 uuid        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    use_case           text        NOT NULL,
    kind               text        NOT NULL,
    payload            jsonb       NOT NULL,
    status             text        NOT NULL CHECK (status IN ('pending', 'dispatched', 'running', 'succeeded', 'dead', 'cancelled')),
    priority           smallint    NOT NULL,
    attempts           bigint      NOT NULL CHECK (attempts >= 0 AND attempts <= 4294967295),
    max_attempts       bigint      NOT NULL CHECK (max_attempts >= 0 AND max_attempts <= 4294967295),
    backoff_strategy   text        NOT NULL CHECK (backoff_strategy IN ('exponential', 'linear', 'constant')),
    backoff_base_us    bigint      NOT NULL CHECK (backoff_base_us >= 0),
    backoff_cap_us     bigint      NOT NULL CHECK (backoff_cap_us >= 0),
    backoff_jitter     text        NOT NULL CHECK (backoff_jitter IN ('none', 'full', 'equal')),
    run_at             timestamptz NOT NULL,
    delay_tolerance_us bigint      NOT NULL CHECK (delay_tolerance_us >= 0),
    deadline_at        timestamptz NOT NULL,
    timeout_us         bigint      NOT NULL CHECK (timeout_us >= 0),
    idempotency_key    text,
    lease_token        uuid,
    lease_expires_at   timestamptz,
    cancel_requested   boolean     NOT NULL DEFAULT false,
    last_error         text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    dispatched_at      timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz
);

-- EDF pick of due pending jobs per use case (lease_due): walk in (deadline, priority desc, id) order.
CREATE INDEX jobs_pick_idx ON __SCHEMA__.jobs (use_case, deadline_at, priority DESC, id)
    INCLUDE (run_at) WHERE status = 'pending';

-- Expired-lease reaping (dispatched and running) and the in-flight count per use case.
CREATE INDEX jobs_lease_idx ON __SCHEMA__.jobs (status, lease_expires_at)
    WHERE status IN ('dispatched', 'running');
CREATE INDEX jobs_in_flight_idx ON __SCHEMA__.jobs (use_case)
    WHERE status IN ('dispatched', 'running');

-- Quota counts: a tenant's unfinished jobs in a use case.
CREATE INDEX jobs_quota_idx ON __SCHEMA__.jobs (tenant_id, use_case)
    WHERE status IN ('pending', 'dispatched', 'running');

-- Listing by tenant, newest first (keyset on id).
CREATE INDEX jobs_tenant_list_idx ON __SCHEMA__.jobs (tenant_id, id DESC);

-- Idempotency keys are unique per tenant.
CREATE UNIQUE INDEX jobs_idempotency_idx ON __SCHEMA__.jobs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Pruning terminal jobs by age.
CREATE INDEX jobs_finished_idx ON __SCHEMA__.jobs (finished_at)
    WHERE finished_at IS NOT NULL;

-- Wake-ups for the scheduler on channel '__SCHEMA___wakeup'.
-- 'due': a job became pending and due (run_at <= the time of the write, so an injected test clock
-- works too). 'freed': a job left dispatched/running without going to running (capacity freed).
-- NOTIFY is transactional: nothing is sent for a rolled-back enqueue, and repeats within one
-- transaction are folded into one.
CREATE FUNCTION __SCHEMA__.jobs_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('__SCHEMA___wakeup', 'due');
    RETURN NULL;
END
$$;

CREATE FUNCTION __SCHEMA__.jobs_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND NEW.run_at <= NEW.updated_at THEN
        PERFORM pg_notify('__SCHEMA___wakeup', 'due');
    END IF;
    IF OLD.status IN ('dispatched', 'running') AND NEW.status NOT IN ('dispatched', 'running') THEN
        PERFORM pg_notify('__SCHEMA___wakeup', 'freed');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON __SCHEMA__.jobs
    FOR EACH ROW WHEN (NEW.run_at <= NEW.created_at)
    EXECUTE FUNCTION __SCHEMA__.jobs_notify_due();

CREATE TRIGGER jobs_notify_update AFTER UPDATE OF status ON __SCHEMA__.jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND (
        (NEW.status = 'pending' AND NEW.run_at <= NEW.updated_at)
        OR (OLD.status IN ('dispatched', 'running') AND NEW.status NOT IN ('dispatched', 'running'))))
    EXECUTE FUNCTION __SCHEMA__.jobs_notify_change();

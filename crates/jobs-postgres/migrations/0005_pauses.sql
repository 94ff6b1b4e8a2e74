-- async-jobs: pause and resume, per use case and per tenant within a use case.
--
-- A row pauses `use_case` for every tenant (tenant_id = '') or for one tenant. The pick leaves
-- paused jobs pending; jobs already dispatched or running finish. Rows survive restarts and every
-- scheduler reads the same table, so a pause holds across processes.
--
-- A new, empty table: no lock on jobs, nothing to backfill.
CREATE TABLE IF NOT EXISTS __SCHEMA__.pauses (
    use_case text NOT NULL,
    tenant_id text NOT NULL DEFAULT '',
    paused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (use_case, tenant_id)
);

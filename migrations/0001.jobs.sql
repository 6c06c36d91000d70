-- The jobs table: one row per job holds its status, retry policy and lease.
-- depends:

CREATE TABLE jobs (
    id                   uuid PRIMARY KEY,
    topic                text NOT NULL,
    payload              bytea NOT NULL DEFAULT '\x',
    priority             integer NOT NULL DEFAULT 0,
    status               text NOT NULL,
    -- Attempts ever started. Only grows, also across a requeue, so a late
    -- report from an old attempt can never match the row again.
    attempt              integer NOT NULL DEFAULT 0,
    -- Attempts made before the last requeue: the current budget counts
    -- attempt - attempt_base against max_attempts.
    attempt_base         integer NOT NULL DEFAULT 0,
    max_attempts         integer NOT NULL,
    run_at               timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    finished_at          timestamptz,
    lease_expires_at     timestamptz,
    worker_id            text,
    last_error           text,
    timeout_ms           bigint NOT NULL DEFAULT 0,
    cancel_requested_at  timestamptz,
    schedule_id          uuid,
    occurrence           timestamptz,
    CONSTRAINT jobs_status_check CHECK (status IN (
        'scheduled', 'pending', 'running', 'retrying',
        'completed', 'dead_lettered', 'canceled')),
    CONSTRAINT jobs_priority_check CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT jobs_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT jobs_schedule_occurrence_key UNIQUE (schedule_id, occurrence)
) WITH (
    -- Every job is updated several times in its life: leave room on the page
    -- for the new row versions, and vacuum often, because each claim leaves
    -- a dead entry at the head of the claim index that later claims would
    -- otherwise scan past.
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim: pending jobs of one topic in dispatch order. Partial, so
-- future-dated, running and finished jobs never enter it.
CREATE INDEX jobs_claim_idx ON jobs (topic, priority DESC, run_at, id)
    WHERE status = 'pending';

-- The promoter: scheduled and retrying jobs by due time.
CREATE INDEX jobs_due_idx ON jobs (run_at)
    WHERE status IN ('scheduled', 'retrying');

-- The watchdog: running jobs by lease expiry.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at)
    WHERE status = 'running';

-- The pruner: finished jobs by age.
CREATE INDEX jobs_finished_idx ON jobs (finished_at)
    WHERE status IN ('completed', 'dead_lettered', 'canceled');

-- Listings, newest first, optionally by status.
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC, id DESC);

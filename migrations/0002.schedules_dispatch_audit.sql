-- Schedules and their occurrences, the durable dispatch pause, the audit log.
-- depends: 0001.jobs

-- One row per schedule. The rule is one of: at (a one-shot at at_time, also
-- what After resolves to: then after_ms is set), every (every_ms, anchored
-- at start_at), cron (with a time zone). next_fire_at is the next occurrence
-- not yet fired; NULL when nothing more will fire. The last_* columns and
-- fired_count describe what it fired (its occurrence rows are pruned).
-- resumed_at is when it was last resumed: occurrences due before then came
-- due while it was paused, and count as missed.
CREATE TABLE schedules (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    topic           text NOT NULL,
    payload         bytea NOT NULL DEFAULT '\x',
    priority        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    timeout_ms      bigint NOT NULL DEFAULT 0,
    kind            text NOT NULL,
    at_time         timestamptz,
    after_ms        bigint,
    every_ms        bigint,
    cron            text,
    time_zone       text NOT NULL DEFAULT 'UTC',
    start_at        timestamptz,
    missed_runs     text NOT NULL DEFAULT 'one',
    max_catch_up    integer NOT NULL DEFAULT 100,
    paused_at       timestamptz,
    resumed_at      timestamptz,
    next_fire_at    timestamptz,
    last_occurrence timestamptz,
    last_job_id     uuid,
    fired_count     bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_name_key UNIQUE (name),
    CONSTRAINT schedules_kind_check CHECK (kind IN ('at', 'every', 'cron')),
    CONSTRAINT schedules_missed_runs_check CHECK (missed_runs IN ('one', 'skip', 'all')),
    CONSTRAINT schedules_priority_check CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT schedules_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT schedules_every_check CHECK (every_ms IS NULL OR every_ms > 0),
    CONSTRAINT schedules_max_catch_up_check CHECK (max_catch_up BETWEEN 1 AND 1000)
);

-- The scheduler loop: active schedules by their next occurrence.
CREATE INDEX schedules_due_idx ON schedules (next_fire_at)
    WHERE paused_at IS NULL AND next_fire_at IS NOT NULL;

-- Every occurrence fired, and the job it produced. The primary key is what
-- makes an occurrence fire exactly once, whichever replica gets there.
CREATE TABLE schedule_occurrences (
    schedule_id     uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    occurrence      timestamptz NOT NULL,
    fired_at        timestamptz NOT NULL DEFAULT now(),
    job_id          uuid NOT NULL,
    catch_up        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (schedule_id, occurrence)
);

-- The dispatch pause: one row per paused scope, '*' for every topic. The
-- claim statement reads it.
CREATE TABLE dispatch_pauses (
    scope           text PRIMARY KEY,
    reason          text NOT NULL DEFAULT '',
    paused_by       text NOT NULL,
    paused_at       timestamptz NOT NULL DEFAULT now()
);

-- Every operator action: who, what, on which target, from where.
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    username        text NOT NULL,
    action          text NOT NULL,
    target          text NOT NULL DEFAULT '',
    detail          jsonb NOT NULL DEFAULT '{}',
    peer            text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_user_idx ON audit_log (username, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);

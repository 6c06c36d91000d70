DROP INDEX jobs_schedule_occurrence_key;
ALTER TABLE jobs ADD CONSTRAINT jobs_schedule_occurrence_key
    UNIQUE (schedule_id, occurrence);
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);

-- Fewer index entries per job.
-- depends: 0002.schedules_dispatch_audit
--
-- No update of a job can be HOT (its status is
-- in an index key and in partial-index predicates), so every row version a
-- job writes (insert, claim, end of attempt) inserts into every index whose
-- predicate it meets. Two of those indexes served rare reads:

-- The newest-first listing walks jobs_status_created_idx once per status
-- instead (pulsed.jobs.LIST_JOBS).
DROP INDEX jobs_created_idx;

-- Only jobs fired by a schedule carry (schedule_id, occurrence); the others
-- no longer add a NULL entry to this index with every row version.
ALTER TABLE jobs DROP CONSTRAINT jobs_schedule_occurrence_key;
CREATE UNIQUE INDEX jobs_schedule_occurrence_key ON jobs (schedule_id, occurrence)
    WHERE schedule_id IS NOT NULL;

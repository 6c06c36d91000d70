DROP TABLE audit_log;
DROP TABLE dispatch_pauses;
DROP TABLE schedule_occurrences;
DROP TABLE schedules;

-- Found by profiling webhook ingest (docs/benchmarks.md): builds_queue (status, queued_at) is
-- a prefix of builds_by_status_time (status, queued_at, id), which serves every query it
-- served, so every inserted or updated build paid for one index too many.
DROP INDEX builds_queue;

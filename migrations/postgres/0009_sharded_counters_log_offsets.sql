-- Two costs the benchmarks found (docs/benchmarks.md).
--
-- Every finished build added to the same few counter rows, so each finishing transaction
-- waited for the previous one's row lock until that one's commit had synced: the queue's
-- throughput could not grow with workers. A counter is now spread over shards, each writer
-- adding to a random one; reading sums them.
ALTER TABLE metric_counters ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE metric_counters DROP CONSTRAINT metric_counters_pkey;
ALTER TABLE metric_counters ADD PRIMARY KEY (name, labels, shard);

-- A live viewer asks for a log from a byte offset; finding the chunk that holds it read every
-- earlier chunk of the build, so following a long log cost more with every piece.
CREATE INDEX build_log_chunks_by_offset ON build_log_chunks (build_id, start_offset);

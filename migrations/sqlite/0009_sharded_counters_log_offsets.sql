-- Two costs the benchmarks found (docs/benchmarks.md).
--
-- Every finished build added to the same few counter rows, so on PostgreSQL each finishing
-- transaction waited for the previous one's row lock until that one's commit had synced: the
-- queue's throughput could not grow with workers. A counter is now spread over shards, each
-- writer adding to a random one; reading sums them.
CREATE TABLE metric_counters_sharded (
    name    TEXT NOT NULL,
    labels  TEXT NOT NULL,
    shard   INTEGER NOT NULL DEFAULT 0,
    value   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, labels, shard)
);
INSERT INTO metric_counters_sharded (name, labels, shard, value)
    SELECT name, labels, 0, value FROM metric_counters;
DROP TABLE metric_counters;
ALTER TABLE metric_counters_sharded RENAME TO metric_counters;

-- A live viewer asks for a log from a byte offset; finding the chunk that holds it read every
-- earlier chunk of the build, so following a long log cost more with every piece.
CREATE INDEX build_log_chunks_by_offset ON build_log_chunks (build_id, start_offset);

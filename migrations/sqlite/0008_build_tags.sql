-- The tags each build was planned to push, one row per tag, so that "the newest finished build
-- carrying tag T" (the badge's `?tag=`) is read along an index instead of by decoding every
-- build's tags_json. Triggers keep the rows in step with builds, whatever code path wrote them.
CREATE TABLE build_tags (
    build_id       TEXT NOT NULL REFERENCES builds (id),
    repository_id  TEXT NOT NULL,
    tag            TEXT NOT NULL,
    -- The build's queue time, copied so the index holds the badge's order.
    queued_at      INTEGER NOT NULL,
    PRIMARY KEY (build_id, tag)
);

CREATE INDEX build_tags_by_repository_tag_time ON build_tags (repository_id, tag, queued_at, build_id);

CREATE TRIGGER builds_index_tags_insert AFTER INSERT ON builds
BEGIN
    INSERT OR IGNORE INTO build_tags (build_id, repository_id, tag, queued_at)
    SELECT NEW.id, NEW.repository_id, value, NEW.queued_at FROM json_each(NEW.tags_json);
END;

CREATE TRIGGER builds_index_tags_update AFTER UPDATE OF tags_json, queued_at, repository_id ON builds
BEGIN
    DELETE FROM build_tags WHERE build_id = OLD.id;
    INSERT OR IGNORE INTO build_tags (build_id, repository_id, tag, queued_at)
    SELECT NEW.id, NEW.repository_id, value, NEW.queued_at FROM json_each(NEW.tags_json);
END;

-- The builds from before this migration.
INSERT OR IGNORE INTO build_tags (build_id, repository_id, tag, queued_at)
SELECT b.id, b.repository_id, t.value, b.queued_at FROM builds b, json_each(b.tags_json) t;

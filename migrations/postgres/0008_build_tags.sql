-- The tags each build was planned to push, one row per tag, so that "the newest finished build
-- carrying tag T" (the badge's `?tag=`) is read along an index instead of by decoding every
-- build's tags_json. A trigger keeps the rows in step with builds, whatever code path wrote them.
CREATE TABLE build_tags (
    build_id       TEXT NOT NULL REFERENCES builds (id),
    repository_id  TEXT NOT NULL,
    tag            TEXT NOT NULL,
    -- The build's queue time, copied so the index holds the badge's order.
    queued_at      BIGINT NOT NULL,
    PRIMARY KEY (build_id, tag)
);

CREATE INDEX build_tags_by_repository_tag_time ON build_tags (repository_id, tag, queued_at, build_id);

CREATE FUNCTION slipway_index_build_tags() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM build_tags WHERE build_id = OLD.id;
    END IF;
    INSERT INTO build_tags (build_id, repository_id, tag, queued_at)
    SELECT NEW.id, NEW.repository_id, tag, NEW.queued_at
    FROM json_array_elements_text(NEW.tags_json::json) AS tag
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER builds_index_tags AFTER INSERT OR UPDATE OF tags_json, queued_at, repository_id ON builds
FOR EACH ROW EXECUTE FUNCTION slipway_index_build_tags();

-- The builds from before this migration.
INSERT INTO build_tags (build_id, repository_id, tag, queued_at)
SELECT b.id, b.repository_id, t.tag, b.queued_at
FROM builds b CROSS JOIN LATERAL json_array_elements_text(b.tags_json::json) AS t(tag)
ON CONFLICT DO NOTHING;

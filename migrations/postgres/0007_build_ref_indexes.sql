-- Build lists filtered by ref (`?ref=`), alone or with a repository, read in the lists' order
-- (newest first) from an index, as every other filter is. Without these, a ref-only list
-- walked builds_by_time and skipped every build of another ref.
CREATE INDEX builds_by_ref_time ON builds (git_ref, queued_at, id);
CREATE INDEX builds_by_repository_ref_time ON builds (repository_id, git_ref, queued_at, id);

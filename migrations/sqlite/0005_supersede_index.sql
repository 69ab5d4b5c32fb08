-- A push cancels the unfinished builds of the commit it replaced (same repository, rule and
-- ref). Without an index on the commit, that lookup read every build of the repository, so
-- each delivery cost more the longer the repository's history was.
CREATE INDEX builds_by_ref_commit ON builds (repository_id, git_ref, commit_sha);

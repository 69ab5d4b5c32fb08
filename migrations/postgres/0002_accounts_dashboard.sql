-- Accounts, roles, API tokens and sessions; repositories managed through the API; the build
-- state timeline; log byte offsets; fleet-wide metric counters (PostgreSQL).

-- Where a repository's definition lives: 'config' (the configuration file, which wins at every
-- start) or 'api' (created and edited through the API; the configuration leaves it alone).
ALTER TABLE repositories ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'config';
-- Anyone, signed in or not, may read this repository's builds, logs and badge.
ALTER TABLE repositories ADD COLUMN anonymous_read BOOLEAN NOT NULL DEFAULT FALSE;
-- Secrets of API-managed repositories. They are write-only in the API: no answer, page or log
-- ever shows them. Configuration-managed repositories keep theirs in the configuration.
ALTER TABLE repositories ADD COLUMN webhook_secret TEXT;
ALTER TABLE repositories ADD COLUMN git_username TEXT;
ALTER TABLE repositories ADD COLUMN git_password TEXT;

CREATE TABLE users (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    -- An Argon2id PHC string; never a password.
    password_hash  TEXT NOT NULL,
    -- A role on every repository (read, write, admin, owner), or NULL for per-repository grants only.
    global_role    TEXT,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE repository_grants (
    repository_id  TEXT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, user_id)
);

CREATE INDEX repository_grants_by_user ON repository_grants (user_id);

-- API tokens: only a SHA-256 of each token is stored (tokens carry 256 random bits). A token
-- acts as its user, capped at its scope and, when set, limited to one repository.
CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    scope          TEXT NOT NULL,
    repository_id  TEXT REFERENCES repositories (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT,
    revoked_at     BIGINT
);

CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

-- Dashboard sessions, by a SHA-256 of the cookie's value. The CSRF token is per session.
CREATE TABLE sessions (
    token_hash    TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- What a build did and when, for its timeline: the phases a worker went through in each
-- attempt (cloning, building, pushing). Queueing, attempts and the end come from builds and
-- build_attempts.
CREATE TABLE build_events (
    id        TEXT PRIMARY KEY NOT NULL,
    build_id  TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    attempt   BIGINT NOT NULL,
    state     TEXT NOT NULL,
    at        BIGINT NOT NULL
);

CREATE INDEX build_events_by_build ON build_events (build_id, at);

-- The byte offset of each log chunk's first byte, so that a reader can start anywhere
-- (HTTP Range, a live viewer resuming) without reading what comes before.
ALTER TABLE build_log_chunks ADD COLUMN start_offset BIGINT;
-- Logs written before this migration get their offsets: each chunk starts where the ones
-- before it (in order) end.
UPDATE build_log_chunks AS chunk SET start_offset = (
    SELECT COALESCE(SUM(length(earlier.data)), 0) FROM build_log_chunks AS earlier
    WHERE earlier.build_id = chunk.build_id AND earlier.seq < chunk.seq
);

-- Keyset pagination of build lists, newest first, overall and per repository.
CREATE INDEX builds_by_time ON builds (queued_at, id);
CREATE INDEX builds_by_repository_time ON builds (repository_id, queued_at, id);
CREATE INDEX builds_by_status_time ON builds (status, queued_at, id);
DROP INDEX builds_by_repository;

-- Counters shared by every process (Prometheus counters and histogram buckets), so that a
-- fleet of workers without HTTP endpoints is still measured wherever /metrics is served.
CREATE TABLE metric_counters (
    name    TEXT NOT NULL,
    labels  TEXT NOT NULL,
    value   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (name, labels)
);

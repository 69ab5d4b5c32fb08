-- Slipway's initial schema (PostgreSQL). Times are Unix epoch milliseconds, ids are UUID text, so
-- that the same queries and row types serve SQLite and PostgreSQL.

CREATE TABLE repositories (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    provider    TEXT NOT NULL,
    git_url     TEXT NOT NULL,
    image       TEXT NOT NULL,
    rules_json  TEXT NOT NULL DEFAULT '[]',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    repository_id   TEXT NOT NULL REFERENCES repositories (id),
    delivery_key    TEXT NOT NULL,
    provider        TEXT NOT NULL,
    event           TEXT NOT NULL DEFAULT '',
    received_at     BIGINT NOT NULL,
    status_code     BIGINT NOT NULL,
    outcome         TEXT NOT NULL DEFAULT '',
    decisions_json  TEXT NOT NULL DEFAULT '[]',
    response_json   TEXT NOT NULL DEFAULT '{}',
    body            BYTEA,
    UNIQUE (repository_id, delivery_key)
);

CREATE TABLE builds (
    id                TEXT PRIMARY KEY NOT NULL,
    repository_id     TEXT NOT NULL REFERENCES repositories (id),
    delivery_id       TEXT REFERENCES deliveries (id),
    rule_index        BIGINT NOT NULL DEFAULT 0,
    git_ref           TEXT NOT NULL,
    commit_sha        TEXT NOT NULL,
    image             TEXT NOT NULL,
    tags_json         TEXT NOT NULL,
    dockerfile        TEXT NOT NULL,
    context           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'queued',
    error             TEXT,
    digest            TEXT,
    queued_at         BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    not_before        BIGINT
);

CREATE INDEX builds_queue ON builds (status, queued_at);
CREATE INDEX builds_by_repository ON builds (repository_id, queued_at);

CREATE TABLE build_log_chunks (
    build_id    TEXT NOT NULL REFERENCES builds (id),
    seq         BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (build_id, seq)
);

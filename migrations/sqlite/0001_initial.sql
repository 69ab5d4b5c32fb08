-- Slipway's initial schema (SQLite). Times are Unix epoch milliseconds, ids are UUID text, so
-- that the same queries and row types serve SQLite and PostgreSQL.

CREATE TABLE repositories (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    provider    TEXT NOT NULL,
    git_url     TEXT NOT NULL,
    image       TEXT NOT NULL,
    rules_json  TEXT NOT NULL DEFAULT '[]',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    repository_id   TEXT NOT NULL REFERENCES repositories (id),
    delivery_key    TEXT NOT NULL,
    provider        TEXT NOT NULL,
    event           TEXT NOT NULL DEFAULT '',
    received_at     INTEGER NOT NULL,
    status_code     INTEGER NOT NULL,
    outcome         TEXT NOT NULL DEFAULT '',
    decisions_json  TEXT NOT NULL DEFAULT '[]',
    response_json   TEXT NOT NULL DEFAULT '{}',
    body            BLOB,
    UNIQUE (repository_id, delivery_key)
);

CREATE TABLE builds (
    id                TEXT PRIMARY KEY NOT NULL,
    repository_id     TEXT NOT NULL REFERENCES repositories (id),
    delivery_id       TEXT REFERENCES deliveries (id),
    rule_index        INTEGER NOT NULL DEFAULT 0,
    git_ref           TEXT NOT NULL,
    commit_sha        TEXT NOT NULL,
    image             TEXT NOT NULL,
    tags_json         TEXT NOT NULL,
    dockerfile        TEXT NOT NULL,
    context           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'queued',
    error             TEXT,
    digest            TEXT,
    queued_at         INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    not_before        INTEGER
);

CREATE INDEX builds_queue ON builds (status, queued_at);
CREATE INDEX builds_by_repository ON builds (repository_id, queued_at);

CREATE TABLE build_log_chunks (
    build_id    TEXT NOT NULL REFERENCES builds (id),
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (build_id, seq)
);

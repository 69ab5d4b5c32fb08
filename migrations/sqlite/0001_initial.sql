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
    -- Verification choices, kept here (not secret) so the API can warn about them.
    allow_unsigned     BOOLEAN NOT NULL DEFAULT FALSE,
    allow_legacy_sha1  BOOLEAN NOT NULL DEFAULT FALSE,
    -- The repository as the forge names it; pushes naming another one are ignored.
    forge_repository   TEXT,
    -- A newer push also stops running builds of the same rule and ref (queued ones always).
    supersede_running  BOOLEAN NOT NULL DEFAULT FALSE,
    -- How long one build may run before it is stopped and failed.
    build_timeout_secs INTEGER NOT NULL DEFAULT 3600,
    -- Limits: running builds at once (0 = no limit), per-build memory (bytes) and CPU
    -- (thousandths of a CPU) passed to the engine (0 = none), and the largest build context.
    max_concurrent_builds INTEGER NOT NULL DEFAULT 0,
    memory_limit_bytes    INTEGER NOT NULL DEFAULT 0,
    cpu_limit_millis      INTEGER NOT NULL DEFAULT 0,
    max_context_bytes     INTEGER NOT NULL DEFAULT 1073741824,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Every request to /hooks, accepted or not. Only verified deliveries have a delivery_key
-- (the idempotency key) and a body; a refused request can therefore never block the genuine
-- delivery that carries the same id.
CREATE TABLE deliveries (
    id                 TEXT PRIMARY KEY NOT NULL,
    repository_id      TEXT REFERENCES repositories (id),
    repository_name    TEXT NOT NULL,
    provider           TEXT NOT NULL DEFAULT '',
    event              TEXT NOT NULL DEFAULT '',
    forge_delivery_id  TEXT,
    delivery_key       TEXT,
    source_address     TEXT NOT NULL DEFAULT '',
    received_at        INTEGER NOT NULL,
    status_code        INTEGER NOT NULL,
    verification       TEXT NOT NULL,
    outcome            TEXT NOT NULL DEFAULT '',
    decisions_json     TEXT NOT NULL DEFAULT '[]',
    response_json      TEXT NOT NULL DEFAULT '{}',
    -- The request's event and delivery headers (never signatures or tokens), so a stored
    -- body can be parsed again for a redelivery.
    headers_json       TEXT NOT NULL DEFAULT '{}',
    body               BLOB,
    redelivery_of      TEXT REFERENCES deliveries (id),
    UNIQUE (repository_id, delivery_key)
);

CREATE INDEX deliveries_by_repository ON deliveries (repository_id, received_at);
CREATE INDEX deliveries_by_time ON deliveries (received_at);

CREATE TABLE builds (
    id                TEXT PRIMARY KEY NOT NULL,
    repository_id     TEXT NOT NULL REFERENCES repositories (id),
    delivery_id       TEXT REFERENCES deliveries (id),
    -- What started the build: push, redelivery (later also trigger, retry, manual).
    trigger           TEXT NOT NULL DEFAULT 'push',
    -- rule:ref:commit for builds planned from pushes; a second delivery of the same push
    -- (a redelivery, or a second hook on the repository) finds the first build instead of
    -- making another. NULL for builds that are new on purpose (retries, manual builds).
    dedupe_key        TEXT,
    rule_index        INTEGER NOT NULL DEFAULT 0,
    git_ref           TEXT NOT NULL,
    commit_sha        TEXT NOT NULL,
    image             TEXT NOT NULL,
    tags_json         TEXT NOT NULL,
    dockerfile        TEXT NOT NULL,
    context           TEXT NOT NULL,
    -- The rule's settings when the build was planned (build args, target, labels, cache,
    -- path filter, skip markers), as JSON.
    options_json      TEXT NOT NULL DEFAULT '{}',
    -- The ref's previous commit, for the path filter's diff.
    before_sha        TEXT,
    -- Whether the head commit's message was checked for skip markers when planning.
    message_checked   BOOLEAN NOT NULL DEFAULT FALSE,
    -- Set to stop a running build: its worker sees it on the next heartbeat.
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    -- The build this one retries (POST /api/builds/{id}/retry).
    retry_of          TEXT REFERENCES builds (id),
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

CREATE UNIQUE INDEX builds_dedupe ON builds (repository_id, dedupe_key);
CREATE INDEX builds_queue ON builds (status, queued_at);
CREATE INDEX builds_by_delivery ON builds (delivery_id);
CREATE INDEX builds_running_by_repository ON builds (repository_id, status);
CREATE INDEX builds_by_repository ON builds (repository_id, queued_at);

CREATE TABLE build_log_chunks (
    build_id    TEXT NOT NULL REFERENCES builds (id),
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (build_id, seq)
);

-- Which build holds each tag. A build takes a tag (compare-and-set on the holder) right before
-- pushing it, after checking with git that the holder's commit is not newer on the same ref;
-- pushed_at stays NULL while the holder's push is under way, and a newer build waits for it,
-- so the newer image is always the one that lands last.
CREATE TABLE pushed_tags (
    image            TEXT NOT NULL,
    tag              TEXT NOT NULL,
    build_id         TEXT NOT NULL REFERENCES builds (id),
    git_ref          TEXT NOT NULL,
    commit_sha       TEXT NOT NULL,
    build_queued_at  INTEGER NOT NULL,
    claimed_at       INTEGER NOT NULL,
    pushed_at        INTEGER,
    PRIMARY KEY (image, tag)
);

-- Build-trigger URLs. Only a SHA-256 of each token is stored: tokens carry 256 random bits, so
-- a fast hash is enough, and the database never holds a usable token.
CREATE TABLE triggers (
    id             TEXT PRIMARY KEY NOT NULL,
    repository_id  TEXT NOT NULL REFERENCES repositories (id),
    name           TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    last_used_at   INTEGER,
    UNIQUE (repository_id, name)
);

-- The last requests of each trigger, for the API (older ones are pruned on insert).
CREATE TABLE trigger_requests (
    id              TEXT PRIMARY KEY NOT NULL,
    trigger_id      TEXT NOT NULL REFERENCES triggers (id),
    received_at     INTEGER NOT NULL,
    source_address  TEXT NOT NULL DEFAULT '',
    status_code     INTEGER NOT NULL,
    body            TEXT NOT NULL DEFAULT '',
    response_json   TEXT NOT NULL DEFAULT '[]'
);

CREATE INDEX trigger_requests_by_trigger ON trigger_requests (trigger_id, received_at);

-- Every attempt at a build: who ran it, when, and how it ended. A build retried after an
-- infrastructure failure (or a lost worker) has several.
CREATE TABLE build_attempts (
    id           TEXT PRIMARY KEY NOT NULL,
    build_id     TEXT NOT NULL REFERENCES builds (id),
    attempt      INTEGER NOT NULL,
    worker       TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT,
    error        TEXT
);

-- A build handed back at shutdown does not use up an attempt, so two rows can share a number.
CREATE INDEX build_attempts_by_build ON build_attempts (build_id, started_at);

-- Worker processes and their health, refreshed every few seconds, so a standalone worker (which
-- has no HTTP endpoint) can report itself unhealthy wherever the API is served.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY NOT NULL,
    hostname      TEXT NOT NULL,
    slots         INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    problem       TEXT
);

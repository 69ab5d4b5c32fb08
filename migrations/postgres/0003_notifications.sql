-- Commit statuses and outgoing webhooks (PostgreSQL): every status a build takes is recorded by
-- triggers, so no code path can forget to announce it; a dispatcher turns each into
-- notifications (an outbox), which senders deliver with retries and keep a history of.

-- Commit statuses: whether to post them, the forge's API base URL, the repository as the
-- forge's API names it, and (for repositories managed through the API) the token.
ALTER TABLE repositories ADD COLUMN report_status BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE repositories ADD COLUMN status_api_url TEXT;
ALTER TABLE repositories ADD COLUMN status_repository TEXT;
ALTER TABLE repositories ADD COLUMN status_token TEXT;

-- Build lists of one repository and one status (and the per-repository concurrency count)
-- read in the lists' order from one index.
DROP INDEX builds_running_by_repository;
CREATE INDEX builds_by_repository_status_time ON builds (repository_id, status, queued_at, id);

CREATE TABLE build_transitions (
    seq               BIGSERIAL PRIMARY KEY,
    build_id          TEXT NOT NULL,
    status            TEXT NOT NULL,
    at                BIGINT NOT NULL,
    dispatched        BOOLEAN NOT NULL DEFAULT FALSE,
    lease_owner       TEXT,
    lease_expires_at  BIGINT
);

CREATE INDEX build_transitions_undispatched ON build_transitions (dispatched, seq);

CREATE FUNCTION slipway_announce_build() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status <> OLD.status THEN
        INSERT INTO build_transitions (build_id, status, at)
        VALUES (NEW.id, NEW.status, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER builds_announce AFTER INSERT OR UPDATE OF status ON builds
FOR EACH ROW EXECUTE FUNCTION slipway_announce_build();

-- Outgoing webhooks of a repository: where to, for which events, signed with which secret.
CREATE TABLE outgoing_hooks (
    id             TEXT PRIMARY KEY NOT NULL,
    repository_id  TEXT NOT NULL REFERENCES repositories (id),
    url            TEXT NOT NULL,
    events_json    TEXT NOT NULL,
    secret         TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE INDEX outgoing_hooks_by_repository ON outgoing_hooks (repository_id);

-- The outbox: one row per status post or webhook request to make. `event` is the status
-- state or the webhook event; `payload_json` what the event says (the sender adds the
-- delivery id and the time it signs at).
CREATE TABLE notifications (
    id                TEXT PRIMARY KEY NOT NULL,
    build_id          TEXT NOT NULL,
    repository_id     TEXT NOT NULL,
    kind              TEXT NOT NULL,
    hook_id           TEXT,
    event             TEXT NOT NULL,
    payload_json      TEXT NOT NULL DEFAULT '{}',
    transition_seq    BIGINT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending',
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    finished_at       BIGINT,
    redelivery_of     TEXT
);

CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
CREATE INDEX notifications_by_build ON notifications (build_id, created_at);
CREATE INDEX notifications_by_hook ON notifications (hook_id, created_at);

CREATE TABLE notification_attempts (
    id                TEXT PRIMARY KEY NOT NULL,
    notification_id   TEXT NOT NULL,
    attempt           BIGINT NOT NULL,
    at                BIGINT NOT NULL,
    status_code       BIGINT,
    duration_ms       BIGINT NOT NULL,
    error             TEXT,
    response_excerpt  TEXT
);

CREATE INDEX notification_attempts_by_notification ON notification_attempts (notification_id, at);

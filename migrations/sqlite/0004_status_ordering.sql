-- Commit statuses in order across processes. A status belongs to a slot on the forge (the
-- repository, the commit and the status context): `status_key` names it, so a newer status of
-- the same slot (from this build or another build of the same rule and commit) supersedes an
-- older unsent one, and a sender holds the slot's lease while it checks and sends, so that no
-- two processes send statuses of one slot at once and an older one cannot land after a newer.
ALTER TABLE notifications ADD COLUMN status_key TEXT;

CREATE INDEX notifications_by_status_key ON notifications (status_key, transition_seq);

CREATE TABLE status_send_leases (
    status_key  TEXT PRIMARY KEY NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);

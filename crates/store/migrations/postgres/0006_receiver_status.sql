-- What each receiver is doing now, written by the instance that runs it (one row per receiver,
-- replaced as its state changes; `since` stays while the state does), and when a held message
-- first failed, so an outage of the sink is measured from its start even across restarts.
-- Keep in step with ../sqlite/0006_receiver_status.sql.

ALTER TABLE ledger ADD COLUMN failing_since BIGINT;

CREATE TABLE receiver_status (
    receiver_id BIGINT PRIMARY KEY REFERENCES receivers (id) ON DELETE CASCADE,
    state       TEXT NOT NULL,
    since       BIGINT NOT NULL,
    detail      TEXT,
    next_at     BIGINT,
    instance    TEXT,
    alerted_at  BIGINT,
    updated_at  BIGINT NOT NULL
);

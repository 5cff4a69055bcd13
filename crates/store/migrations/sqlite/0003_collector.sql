-- Collection state: checkpoints per receiver, the delivery ledger (the exactly-once record), and the
-- built-in store's messages. Keep in step with ../postgres/0003_collector.sql.

CREATE TABLE checkpoints (
    receiver_id  BIGINT PRIMARY KEY REFERENCES receivers (id) ON DELETE CASCADE,
    uid_validity BIGINT NOT NULL,
    last_uid     BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE ledger (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver_id      BIGINT NOT NULL REFERENCES receivers (id) ON DELETE CASCADE,
    uid_validity     BIGINT NOT NULL,
    uid              BIGINT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    message_id       TEXT,
    content_hash     TEXT,
    size             BIGINT NOT NULL DEFAULT 0,
    status           TEXT NOT NULL,
    reason           TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    receipt          TEXT,
    post_action_done BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (receiver_id, uid_validity, uid)
);
CREATE INDEX ledger_hash ON ledger (receiver_id, content_hash);
CREATE INDEX ledger_status ON ledger (status);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    receiver_id     BIGINT,
    message_id      TEXT,
    subject         TEXT NOT NULL DEFAULT '',
    from_address    TEXT NOT NULL DEFAULT '',
    from_name       TEXT NOT NULL DEFAULT '',
    date            TEXT,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    raw_path        TEXT NOT NULL,
    normalized      TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX messages_created ON messages (created_at);

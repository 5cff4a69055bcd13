-- oauthimap schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql (same tables, columns,
-- constraints; only types differ). Timestamps are epoch milliseconds; sealed values are BLOB envelopes.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE applications (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL UNIQUE,
    active            BOOLEAN NOT NULL DEFAULT TRUE,
    provider          TEXT NOT NULL,
    cloud             TEXT NOT NULL DEFAULT 'global',
    client_id         TEXT NOT NULL,
    client_secret     BLOB,
    tenant            TEXT,
    endpoint_base     TEXT,
    authorize_url     TEXT,
    token_url         TEXT,
    device_url        TEXT,
    userinfo_url      TEXT,
    scopes            TEXT,
    secret_expires_at BIGINT,
    comment           TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE accounts (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id       BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    identity             TEXT NOT NULL,
    mailbox              TEXT NOT NULL,
    grant_kind           TEXT NOT NULL,
    state                TEXT NOT NULL,
    failure_count        INTEGER NOT NULL DEFAULT 0,
    access_token         BLOB,
    access_expires_at    BIGINT,
    refresh_token        BLOB,
    refresh_issued_at    BIGINT,
    refresh_last_used_at BIGINT,
    scopes               TEXT NOT NULL DEFAULT '',
    last_refresh_at      BIGINT,
    next_attempt_at      BIGINT,
    last_error           TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (application_id, identity, mailbox)
);

CREATE TABLE receivers (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL UNIQUE,
    active             BOOLEAN NOT NULL DEFAULT TRUE,
    paused_reason      TEXT,
    application_id     BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    account_id         BIGINT REFERENCES accounts (id) ON DELETE SET NULL,
    host               TEXT NOT NULL,
    port               INTEGER NOT NULL,
    security           TEXT NOT NULL,
    mechanism          TEXT NOT NULL,
    folder             TEXT NOT NULL,
    trigger_kind       TEXT NOT NULL,
    poll_interval_secs INTEGER NOT NULL,
    after_delivery     TEXT NOT NULL,
    accepted_folder    TEXT,
    refused_folder     TEXT,
    size_limit_bytes   BIGINT NOT NULL,
    sink_kind          TEXT NOT NULL,
    sink_target        TEXT,
    sink_secret        BLOB,
    ca_file            TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX receivers_account ON receivers (account_id);
CREATE INDEX receivers_application ON receivers (application_id);

CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             BIGINT NOT NULL,
    level          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    application_id BIGINT,
    account_id     BIGINT,
    receiver_id    BIGINT,
    message        TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

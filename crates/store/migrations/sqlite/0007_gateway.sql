-- The gateway: per-client passwords that let password-only clients (GLPI's mail collector,
-- fetchmail, printers) reach an account's mailbox through oauthimap, stored argon2id-hashed; and
-- where the gateway and diagnostics connect for an application or an account when it is not the
-- provider's own server (JSON: {"imap": {"host", "port", "security", "ca_file"}, ...}).
-- Keep in step with ../postgres/0007_gateway.sql.

CREATE TABLE gateway_passwords (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    protocols     TEXT NOT NULL,
    expires_at    BIGINT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    last_remote   TEXT,
    UNIQUE (account_id, name)
);

ALTER TABLE applications ADD COLUMN upstreams TEXT;
ALTER TABLE accounts ADD COLUMN upstreams TEXT;

-- Pending sign-ins (authorization code flow) and API tokens. Keep in step with ../postgres/0002_oauth.sql.

CREATE TABLE oauth_states (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    state_hash     TEXT NOT NULL UNIQUE,
    application_id BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    mailbox        TEXT,
    pkce_verifier  BLOB,
    redirect_url   TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    consumed_at    BIGINT,
    account_id     BIGINT,
    error          TEXT
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

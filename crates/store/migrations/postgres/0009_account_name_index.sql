-- The token broker finds accounts by mailbox or identity, case-insensitively, with one indexed
-- lookup however many accounts there are (it listed them all).
CREATE INDEX accounts_mailbox_lower ON accounts (LOWER(mailbox));
CREATE INDEX accounts_identity_lower ON accounts (LOWER(identity));

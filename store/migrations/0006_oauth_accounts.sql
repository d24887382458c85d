-- 0006_oauth_accounts: a user's Google grant for the playlist feature (issue 16).
--
-- One row per user who connected YouTube: the refresh token sealed with AES-256-GCM by the
-- service (smartpip.playlist.crypto; the user ID and key ID are its associated data, so a
-- ciphertext copied into another row does not open), the ID of the key that sealed it (for
-- rotation), the scopes Google granted, and when. Access tokens are never stored.
-- Deleted on disconnect, on invalid_grant and with the account (store.account).
-- (0005 and 0007 belong to other changes of the same release.)
CREATE TABLE oauth_accounts (
    user_id        uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    provider       text NOT NULL DEFAULT 'google' CHECK (provider = 'google'),
    -- The Google account (OIDC sub) that consented; always the signed-in user's own.
    subject        text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 255),
    key_id         text NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 32),
    -- nonce (12) + ciphertext + tag (16); Google refresh tokens are about 100 bytes.
    token_sealed   bytea NOT NULL CHECK (octet_length(token_sealed) BETWEEN 29 AND 4096),
    scopes         text[] NOT NULL,
    connected_at   timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- `smartpip playlist rotate-keys` walks the rows not sealed under the newest key.
CREATE INDEX oauth_accounts_key_id_idx ON oauth_accounts (key_id);

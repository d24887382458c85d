-- 0001_initial: the first schema of the Smart PiP backend.
--
-- Applied once, inside one transaction, by store.migrations.apply_migrations. Never edit this file
-- after it has been applied anywhere: its checksum is recorded and a changed file stops startup.
-- Change the schema by adding 0002_*.sql.
--
-- CHECK constraints here are generous backstops (cheap, never the primary validation, which the
-- HTTP layer does with precise error messages); they keep garbage out if a bug slips through.

-- One row per person who signed in. Identity is the OIDC (issuer, subject) pair; no e-mail or
-- name is ever stored.
CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    oidc_iss    text NOT NULL CHECK (char_length(oidc_iss) BETWEEN 1 AND 2048),
    -- OpenID Connect Core 1.0 caps `sub` at 255 ASCII characters.
    oidc_sub    text NOT NULL CHECK (char_length(oidc_sub) BETWEEN 1 AND 255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (oidc_iss, oidc_sub)
);

-- The last watched videos of a user. At most 5 rows per user: the writing transaction prunes
-- (the limit is an application rule enforced under the user's row lock, not a constraint).
CREATE TABLE video_history (
    id          bigserial PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider    text NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 32),
    video_id    text NOT NULL CHECK (char_length(video_id) BETWEEN 1 AND 256),
    title       text NOT NULL CHECK (char_length(title) <= 1000),
    url         text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2048),
    watched_at  timestamptz NOT NULL,
    UNIQUE (user_id, provider, video_id)
);

-- "Newest first for one user" is the only read pattern.
CREATE INDEX video_history_user_watched_idx ON video_history (user_id, watched_at DESC);

-- Per-user extension settings; the row is created on first write.
CREATE TABLE settings (
    user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    auto_pip      boolean NOT NULL DEFAULT false,
    skip_seconds  integer NOT NULL DEFAULT 10 CHECK (skip_seconds BETWEEN 1 AND 300),
    site_flags    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(site_flags) = 'object'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Refresh-token families. Each refresh rotates: the new row's parent_id is the presented row,
-- all rows of one login share family_id. Only the SHA-256 of a token is stored (32 bytes).
-- used_at marks a rotated token (presenting it again after the grace window revokes the family);
-- revoked_at marks logout or reuse detection.
CREATE TABLE sessions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id            uuid NOT NULL,
    parent_id            uuid NULL REFERENCES sessions (id) ON DELETE SET NULL,
    token_hash           bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_used_at         timestamptz,
    expires_at           timestamptz NOT NULL,
    absolute_expires_at  timestamptz NOT NULL,
    used_at              timestamptz,
    revoked_at           timestamptz
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_family_id_idx ON sessions (family_id);
-- Deleting a session sets its children's parent_id to NULL; without this index every deleted
-- row (e.g. the expiry cleanup job) would scan the whole table.
CREATE INDEX sessions_parent_id_idx ON sessions (parent_id);

-- Security-relevant events. meta never holds tokens, e-mail addresses or raw IPs. Rows outlive
-- the user (user_id set to NULL) so that a deletion itself stays auditable.
CREATE TABLE audit_logs (
    id          bigserial PRIMARY KEY,
    user_id     uuid NULL REFERENCES users (id) ON DELETE SET NULL,
    event       text NOT NULL CHECK (char_length(event) BETWEEN 1 AND 100),
    meta        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(meta) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_logs_user_created_idx ON audit_logs (user_id, created_at);

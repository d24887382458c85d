-- 0003_history_retention: the user-chosen history retention, and the indexes of the cleanup job.
--
-- Never edit this file once applied anywhere (its checksum is recorded); add a new one instead.

-- historyRetentionDays (NULL: keep the last five, as before) and historyPaused (while true,
-- POST /v1/history records nothing). The HTTP layer validates first; the CHECK is a backstop.
ALTER TABLE settings
    ADD COLUMN history_retention_days integer NULL
        CHECK (history_retention_days IN (1, 7, 30, 90)),
    ADD COLUMN history_paused boolean NOT NULL DEFAULT false;

-- The cleanup job (tasks/cleanup.py) deletes in small batches, each batch finding its rows
-- through one of these instead of scanning the table.
-- Audit rows past their retention, oldest first.
CREATE INDEX audit_logs_created_idx ON audit_logs (created_at);
-- Refresh-token families past a retention after their revocation, absolute or idle expiry.
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_absolute_expires_idx ON sessions (absolute_expires_at);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
-- History rows past their owner's retention: only the users who chose one are visited.
CREATE INDEX settings_history_retention_idx ON settings (user_id)
    WHERE history_retention_days IS NOT NULL;

-- 0004_quota_days: the YouTube quota spent per Pacific-time day, saved from Redis.
--
-- Redis holds the live counter (store.quota, `quota:<day>`); the `quota` job (tasks.quota)
-- copies it here every minute and puts it back when Redis lost it, so a Redis restart does not
-- hand the day's budget out again. One row per day, kept as the operators' usage history
-- (`smartpip quota history`). Counters only grow: every write takes the larger value.
-- (0003 is reserved for another change of the same issue.)
CREATE TABLE quota_days (
    -- The Pacific-time (America/Los_Angeles) date YouTube's quota day runs on.
    day date PRIMARY KEY,
    searches bigint NOT NULL CHECK (searches >= 0),
    units bigint NOT NULL CHECK (units >= 0),
    -- When a counter last grew.
    updated_at timestamptz NOT NULL DEFAULT now()
);

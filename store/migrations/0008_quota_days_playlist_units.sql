-- 0008_quota_days_playlist_units: the units playlist writes spent, saved with the day.
--
-- Playlist writes spend the day's units within their own share (store.playlist_quota, the
-- `playlist_units` field of the day's Redis hash). The `quota` job saves it beside searches
-- and units and puts it back when Redis lost the day, so a Redis restart does not hand the
-- playlists' share out again. Like the other counters it only grows.
--
-- Never edit this file once applied anywhere (its checksum is recorded); add a new one instead.
ALTER TABLE quota_days
    ADD COLUMN playlist_units bigint NOT NULL DEFAULT 0 CHECK (playlist_units >= 0);

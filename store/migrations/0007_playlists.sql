-- 0007_playlists: the user's "Smart PiP" YouTube playlist and the last video added for them.
--
-- One row per connected user who added a video (issue 16, the write half). No token is stored
-- here: the Google grant lives in oauth_accounts (0006), encrypted. playlist_id is the
-- playlist this service created (private) on the user's first add, NULL until then or after
-- YouTube said it no longer exists; last_* remember the last video added (to the Smart PiP
-- playlist or to one the client named), so the same video twice in a row is one insert.
-- (0005 and 0006 belong to other changes of the same release.)
CREATE TABLE youtube_playlists (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    playlist_id text CHECK (playlist_id ~ '^[A-Za-z0-9_-]{2,64}$'),
    last_playlist_id text CHECK (last_playlist_id ~ '^[A-Za-z0-9_-]{2,64}$'),
    last_video_id text CHECK (last_video_id ~ '^[A-Za-z0-9_-]{11}$'),
    last_item_id text CHECK (length(last_item_id) BETWEEN 1 AND 200),
    last_added_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

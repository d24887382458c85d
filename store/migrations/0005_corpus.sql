-- 0005_corpus: the suggest corpus, every video a search or a warming run fetched lately.
--
-- When a suggest miss cannot be searched (budget spent, breaker open, key rejected, YouTube
-- too slow, Redis away and the local allowance spent) and no stale copy exists, the answer
-- comes from here: rows matching any of the query's normalized terms, ranked by the same
-- score as YouTube's results (smartpip/suggest/corpus.py, store/corpus.py).
--
-- YouTube's developer policies allow API data to be kept at most 30 days without refreshing
-- it: a search that finds a video again refreshes its row (fetched_at); the cleanup job
-- deletes rows not refreshed for SMARTPIP_SUGGEST_CORPUS_DAYS (at most 30), and no row older
-- than that is ever served. No user identity is kept here: only what YouTube returned and the
-- normalized query terms that found it.
--
-- Never edit this file once applied anywhere (its checksum is recorded); add a new one instead.
CREATE TABLE suggest_corpus (
    video_id text PRIMARY KEY,
    title text NOT NULL,
    -- Trimmed (store.corpus.DESCRIPTION_CHARS): enough for the ranking's description match.
    description text NOT NULL,
    channel_title text NOT NULL,
    published_at timestamptz NOT NULL,
    -- NULL: the owner hides the count.
    view_count bigint NULL,
    thumbnail_url text NULL,
    -- When a search (or a warming run) last returned the video: the 30-day clock.
    fetched_at timestamptz NOT NULL,
    -- The normalized terms of title and description, tokenized by the service
    -- (smartpip.suggest.normalize.tokenize), so that matching and the ranking's text match see
    -- exactly the terms a query is normalized to (no stemming, no second tokenizer).
    title_terms text[] NOT NULL,
    description_terms text[] NOT NULL,
    -- Terms of the normalized queries that found the video, newest first, at most 32.
    query_terms text[] NOT NULL DEFAULT '{}',
    -- The full-text document: every term above as a lexeme, as is (array_to_tsvector does
    -- not parse or stem). Queries are OR-ed lexemes (store.corpus).
    document tsvector GENERATED ALWAYS AS (
        array_to_tsvector(title_terms || description_terms || query_terms)
    ) STORED
);

CREATE INDEX suggest_corpus_document_idx ON suggest_corpus USING gin (document);
-- The cleanup job's 30-day purge, oldest first, in batches.
CREATE INDEX suggest_corpus_fetched_idx ON suggest_corpus (fetched_at);
-- The candidate walks of a local answer (store.corpus): the most viewed and the most recent
-- rows holding a term, read in index order and stopped after a few dozen, so a term held by
-- most of the corpus costs no more than a rare one. The walk tests each entry's document
-- against the terms: carrying it (and the ID and fetch time) in the index makes the walk an
-- index-only scan, with no table row read per entry passed over (measured: p99 of a local
-- answer over 100,000 videos from ~700 ms scoring every match, to ~20 ms).
CREATE INDEX suggest_corpus_views_idx ON suggest_corpus (view_count DESC NULLS LAST)
    INCLUDE (fetched_at, video_id, document);
CREATE INDEX suggest_corpus_published_idx ON suggest_corpus (published_at DESC)
    INCLUDE (fetched_at, video_id, document);

-- Leases of the scheduled jobs that must complete (supervisors._jobs, "lease" claims): one
-- row per job and period. The fencing token only grows (one sequence for every job), so a
-- holder that lost its lease can never write after a newer one took the period over.
CREATE SEQUENCE job_fence;

CREATE TABLE job_runs (
    job text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    fence bigint NOT NULL,
    holder text NOT NULL,
    lease_until timestamptz NOT NULL,
    state text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 1,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    summary text,
    PRIMARY KEY (job, period_start),
    CHECK (period_end > period_start)
);

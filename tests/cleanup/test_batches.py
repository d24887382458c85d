"""The cleanup job's logic with an in-memory store, under trio's MockClock (no real I/O)."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
import trio
import trio.testing

from tasks.cleanup import KINDS, CleanupPolicy, delete_in_batches, run_cleanup

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


class Backlog:
    """``rows`` deletable rows; records every batch's limit and when it ran (trio time)."""

    def __init__(self, rows: int, *, over_delete: int = 0) -> None:
        self.rows = rows
        self.over_delete = over_delete
        self.calls: list[tuple[float, int]] = []

    async def __call__(self, limit: int) -> int:
        self.calls.append((trio.current_time(), limit))
        await trio.sleep(0.001)  # the batch's own statement takes a little time
        count = min(self.rows, limit)
        self.rows -= count
        return count + self.over_delete


@attrs.define
class FakeStore:
    """Every kind a backlog of rows past a cutoff; records the cutoffs it was asked for."""

    backlogs: dict[str, int]
    cutoffs: dict[str, set[dt.datetime]] = attrs.field(factory=dict)
    fail_on: str | None = None

    async def _delete(self, kind: str, cutoff: dt.datetime, limit: int) -> int:
        self.cutoffs.setdefault(kind, set()).add(cutoff)
        await trio.sleep(0.001)
        if kind == self.fail_on and self.backlogs[kind] <= 2500:
            raise ConnectionError("the database went away")
        count = min(self.backlogs[kind], limit)
        self.backlogs[kind] -= count
        return count

    async def delete_sessions(self, cutoff: dt.datetime, limit: int) -> int:
        return await self._delete("sessions", cutoff, limit)

    async def delete_audit(self, cutoff: dt.datetime, limit: int) -> int:
        return await self._delete("audit", cutoff, limit)

    async def delete_history(self, now: dt.datetime, limit: int) -> int:
        return await self._delete("history", now, limit)

    async def delete_job_runs(self, cutoff: dt.datetime, limit: int) -> int:
        return await self._delete("job_runs", cutoff, limit)

    async def delete_corpus(self, cutoff: dt.datetime, limit: int) -> int:
        return await self._delete("corpus", cutoff, limit)


POLICY = CleanupPolicy(batch_size=1000, max_batches=5, pause_seconds=0.5)


async def test_a_backlog_goes_in_bounded_batches_with_pauses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backlog = Backlog(2500)
    seen: list[int] = []
    start = trio.current_time()
    result = await delete_in_batches(backlog, POLICY, seen.append)
    assert (result.deleted, result.batches, result.capped) == (2500, 3, False)
    assert [limit for _, limit in backlog.calls] == [1000, 1000, 1000]
    assert seen == [1000, 1000, 500]
    # A pause between batches, none before the first or after the last.
    times = [at - start for at, _ in backlog.calls]
    assert times == pytest.approx([0.0, 0.501, 1.002])
    assert trio.current_time() - start == pytest.approx(1.003)


async def test_a_last_full_batch_is_followed_by_an_empty_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backlog = Backlog(2000)
    seen: list[int] = []
    result = await delete_in_batches(backlog, POLICY, seen.append)
    assert (result.deleted, result.batches, result.capped) == (2000, 3, False)
    assert seen == [1000, 1000]  # an empty batch is not reported


async def test_nothing_to_delete_is_one_batch(autojump_clock: trio.testing.MockClock) -> None:
    result = await delete_in_batches(Backlog(0), POLICY)
    assert (result.deleted, result.batches, result.capped) == (0, 1, False)


async def test_the_cap_stops_a_run_and_the_next_run_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backlog = Backlog(7500)
    first = await delete_in_batches(backlog, POLICY)
    assert (first.deleted, first.batches, first.capped) == (5000, 5, True)
    assert backlog.rows == 2500
    second = await delete_in_batches(backlog, POLICY)
    assert (second.deleted, second.batches, second.capped) == (2500, 3, False)
    assert backlog.rows == 0


async def test_a_store_deleting_past_its_limit_is_a_bug(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(ValueError, match="a batch of 1000 deleted 1001 rows"):
        await delete_in_batches(Backlog(5000, over_delete=1), POLICY)


async def test_a_run_uses_each_kinds_cutoff_and_reports_per_kind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore(
        {"sessions": 1200, "audit": 7000, "history": 3, "job_runs": 0, "corpus": 1500}
    )
    policy = attrs.evolve(
        POLICY, session_retention_days=30, audit_retention_days=90, corpus_days=30
    )
    counted: list[tuple[str, int]] = []
    summary = await run_cleanup(store, policy, NOW, lambda kind, n: counted.append((kind, n)))
    assert summary == {
        "sessions": 1200,
        "audit": 5000,
        "history": 3,
        "job_runs": 0,
        "corpus": 1500,
        "capped": ["audit"],
    }
    assert store.cutoffs == {
        "sessions": {NOW - dt.timedelta(days=30)},
        "audit": {NOW - dt.timedelta(days=90)},
        "history": {NOW},  # each user's own retention counts back from now
        "job_runs": {NOW - dt.timedelta(days=90)},
        "corpus": {NOW - dt.timedelta(days=30)},  # YouTube's 30 days
    }
    assert counted == [
        ("sessions", 1000),
        ("sessions", 200),
        *[("audit", 1000)] * 5,
        ("history", 3),
        ("corpus", 1000),
        ("corpus", 500),
    ]
    assert store.backlogs["audit"] == 2000
    assert list(summary)[:5] == list(KINDS)


async def test_batches_committed_before_a_failure_are_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore({"sessions": 0, "audit": 4500, "history": 0, "job_runs": 0, "corpus": 0})
    store.fail_on = "audit"
    counted: list[tuple[str, int]] = []
    with pytest.raises(ConnectionError):
        await run_cleanup(store, POLICY, NOW, lambda kind, n: counted.append((kind, n)))
    assert counted == [("audit", 1000), ("audit", 1000)]
    assert "history" not in store.cutoffs  # the run stopped at the failure


@pytest.mark.parametrize(
    "change",
    [
        {"session_retention_days": 0},
        {"audit_retention_days": 0},
        {"corpus_days": 0},
        {"corpus_days": 31},  # YouTube's developer policies: 30 days at most
        {"batch_size": 0},
        {"max_batches": 0},
        {"pause_seconds": -1.0},
    ],
)
def test_a_policy_out_of_bounds_is_refused(change: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CleanupPolicy(**change)  # type: ignore[arg-type]

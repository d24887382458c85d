"""The history store against a simple in-memory model (hypothesis, real Postgres)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from store.history import (
    HISTORY_LIMIT,
    HistoryRow,
    delete_history,
    delete_history_entry,
    record_watch,
    select_history,
)
from store.users import upsert_user

VIDEOS = [("youtube", f"video{n:06d}") for n in range(8)] + [("vimeo", "1"), ("vimeo", "2")]
BASE = datetime(2024, 1, 1, tzinfo=UTC)
# Few distinct times, so that ties (broken by the last write) happen often.
TIMES = st.integers(min_value=0, max_value=6).map(lambda s: BASE + timedelta(seconds=s))


def test_store_matches_the_model(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:

        def run(fn: Any, *args: Any) -> Any:
            with conn.transaction():
                return fn(conn, *args)

        class History(RuleBasedStateMachine):
            def __init__(self) -> None:
                super().__init__()
                self.user, _ = run(upsert_user, "https://model.example", uuid.uuid4().hex)
                self.other, _ = run(upsert_user, "https://model.example", uuid.uuid4().hex)
                run(record_watch, self.other, HistoryRow("youtube", "video000000", "x", "u", BASE))
                self.other_rows = run(select_history, self.other)
                # (provider, video_id) -> (row, write sequence number)
                self.model: dict[tuple[str, str], tuple[HistoryRow, int]] = {}
                self.writes = 0

            def expected(self) -> list[HistoryRow]:
                ranked = sorted(
                    self.model.values(), key=lambda e: (e[0].watched_at, e[1]), reverse=True
                )
                return [row for row, _ in ranked]

            @rule(video=st.sampled_from(VIDEOS), title=st.sampled_from("ab"), when=TIMES)
            def watch(self, video: tuple[str, str], title: str, when: datetime) -> None:
                row = HistoryRow(video[0], video[1], title, f"https://x/{video[1]}", when)
                self.writes += 1
                self.model[video] = (row, self.writes)
                kept = self.expected()[:HISTORY_LIMIT]
                self.model = {key: entry for key, entry in self.model.items() if entry[0] in kept}
                assert run(record_watch, self.user, row).items == kept

            @rule(video=st.sampled_from(VIDEOS))
            def forget(self, video: tuple[str, str]) -> None:
                deleted = run(delete_history_entry, self.user, *video)
                assert deleted == (1 if self.model.pop(video, None) else 0)

            @rule()
            def clear(self) -> None:
                assert run(delete_history, self.user) == len(self.model)
                self.model.clear()

            @invariant()
            def agrees(self) -> None:
                assert run(select_history, self.user) == self.expected()
                assert run(select_history, self.other) == self.other_rows

        run_state_machine_as_test(
            History,
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            ),
        )

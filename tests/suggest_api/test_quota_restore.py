"""The day's quota across a Redis restart, in the app: the job saves it, the gate restores it."""

from __future__ import annotations

from smartpip.runtime.jobs import job_bodies
from smartpip.runtime.quota import quota_history
from store.quota import SEARCH_UNITS, UNIT_COSTS
from supervisors import Every, JobRun, utc_now
from tests.fakes.youtube import FakeYouTube
from tests.suggest_api.conftest import SuggestApp, ask, cache_result, check_problem, sign_in
from tests.suggest_api.test_quota import AFTERNOON
from tests.support.clock import FakeClock


async def test_the_budget_holds_across_a_redis_restart(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)  # 2026-03-10 15:00 Pacific
    async with suggest_app(clock=clock, suggest_daily_budget="3") as app:
        alice = await sign_in(app, "alice")
        for query in ("lofi beats", "smooth jazz"):
            assert cache_result(await ask(app, alice, query)) == "MISS"

        # One run of the quota job's body (the app's own loop claimed this minute at start,
        # before any search, so it is run here directly, as its next minute would).
        body = job_bodies(app.resources)["quota"]
        summary = await body(JobRun("quota", Every(60).period_at(utc_now()), holder="test"))
        assert summary is not None and summary["saved"] == ["2026-03-10"]
        report = await quota_history(app.resources)
        assert (report["today"], report["budgetSearches"], report["budgetUnits"]) == (
            "2026-03-10",
            3,
            303,
        )
        assert report["live"] == {
            "searches": 2,
            "units": 2 * SEARCH_UNITS,
            "playlistUnits": 0,
            "searchesLeft": 1,
        }
        days = report["days"]
        assert isinstance(days, list) and len(days) == 1
        assert (days[0]["day"], days[0]["searches"], days[0]["units"]) == ("2026-03-10", 2, 202)

        # Redis restarts empty: the cache, the counter and the job's claims are gone.
        await app.resources.redis.delete_prefixed()

        # The next search restores the saved 2 before counting: one is left, not three.
        assert cache_result(await ask(app, alice, "deep house")) == "MISS"
        refused = await ask(app, alice, "cool breeze")  # nothing in the corpus matches
        # A budget refusal: until midnight Pacific (``resetsAt`` only comes with the quota).
        assert "resetsAt" in check_problem(refused, 503, "suggest_unavailable")
        # "deep house" matches nothing in the fake's corpus: no videos.list. Every call is
        # priced by the one table: two searches with their videos.list, one without.
        assert youtube.calls == {"search": 3, "videos": 2}
        units = 3 * UNIT_COSTS["search"] + 2 * UNIT_COSTS["videos"]
        live = (await quota_history(app.resources))["live"]
        assert live == {"searches": 3, "units": units, "playlistUnits": 0, "searchesLeft": 0}
        assert units == 302

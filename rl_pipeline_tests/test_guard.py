"""The endpoint guard on a fake clock: pacing, and a late write pushing the next grant back."""

from __future__ import annotations

import itertools
import random

import pytest

from rl_pipeline.clock import FakeClock
from rl_pipeline.errors import Blocked
from rl_pipeline.guard import ApiShared, EndpointGuard
from rl_pipeline.pace import PacePolicy
from rl_pipeline.sources import RateLimitSpec, load_sources
from rl_pipeline.state import open_store
from rl_pipeline.state.memory import MemoryStore

INTERVAL = 1 / (20 * (1 - PacePolicy.margin))  # the pace: a margin under the file's 20/s
SLACK = INTERVAL * PacePolicy.margin / 2  # half the margin's slack absorbs lateness (0.8 ms)


def guard(clock: FakeClock) -> EndpointGuard:
    spec = load_sources().apis["demo"].model_copy(update={"rate_limits": [RateLimitSpec(rate=20, burst=20)]})
    shared = ApiShared("demo", spec, open_store("memory://"), "demo:test", clock)
    return EndpointGuard(shared, "events_offset", rng=random.Random(0))


def test_requests_are_paced_evenly_whatever_burst_the_file_allows() -> None:
    clock = FakeClock()
    g = guard(clock)
    grants = []
    for _ in range(10):
        grants.append(g.grant(clock.now(), deadline=60))
        g.written(grants[-1])
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(grants)}
    assert gaps == {round(INTERVAL, 6)}  # no burst of 20: one every interval


@pytest.mark.parametrize(("reset", "following"), [("0.050", INTERVAL), ("1.000", 1.010)])
def test_a_spent_budget_pauses_only_when_it_refills_after_the_pace_would_grant(reset: str, following: float) -> None:
    """A bucket with no burst answers every request with `X-RateLimit-Remaining: 0` and a Reset of one of
    its intervals: the pace already waits that long, from the grant, not from the answer. A budget that
    refills later than the pace's next grant still pauses everyone until it does."""
    clock = FakeClock()
    g = guard(clock)
    first = g.grant(clock.now(), deadline=60)
    g.written(first)
    clock.advance(0.010)  # the answer, a round trip later
    g.on_answer(200, {"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    assert g.grant(clock.now(), deadline=60) - first == pytest.approx(following, abs=1e-6)


def test_a_spent_budget_that_pauses_everyone_for_long_says_so() -> None:
    """An hourly budget reported spent on a 200 (OpenAI writes its reset `2m30s`): everyone waits for it, and
    the run log says why within the wait, not only once it is over."""
    clock, events = FakeClock(), []
    spec = load_sources().apis["demo"].model_copy(update={"rate_limits": [RateLimitSpec(rate=20)]})
    shared = ApiShared("demo", spec, open_store("memory://"), "demo:test", clock)
    g = EndpointGuard(shared, "events_offset", rng=random.Random(0), on_event=lambda *e: events.append(e))
    g.written(first := g.grant(clock.now(), deadline=600))
    g.on_answer(200, {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "2m30s"})
    assert events == [("budget", "demo.events_offset: the server says its budget is spent; everyone waits 150.0s "
                                  "for it to refill")]  # fmt: skip
    assert g.grant(clock.now(), deadline=600) - first == pytest.approx(150.0)


@pytest.mark.parametrize(
    ("late", "following"),
    [(0.0, INTERVAL), (SLACK - 1e-4, INTERVAL), (0.004, 0.004 + INTERVAL - SLACK), (0.03, 0.03 + INTERVAL - SLACK)],
)
def test_a_write_later_than_the_slack_pushes_the_next_grant_back(late: float, following: float) -> None:
    clock = FakeClock()
    g = guard(clock)
    granted = g.grant(clock.now(), deadline=60)
    clock.advance(late)
    g.written(granted)
    assert g.grant(clock.now(), deadline=60) == pytest.approx(granted + following, abs=1e-6)


def test_d1_two_limits_without_names_are_both_enforced() -> None:
    """D1: unnamed limits (a per-second and a per-hour one) were both named `default`, and only the last held."""
    clock = FakeClock()
    spec = (
        load_sources()
        .apis["demo"]
        .model_copy(update={"rate_limits": [RateLimitSpec(rate=2), RateLimitSpec(rate=3, period=3600)]})
    )
    g = EndpointGuard(ApiShared("demo", spec, open_store("memory://"), "demo:d1", clock), "events_offset",
                      rng=random.Random(0))  # fmt: skip
    grants = [g.grant(clock.now(), deadline=60) for _ in range(3)]
    assert grants[-1] - grants[0] == pytest.approx(2 / (2 * (1 - PacePolicy.margin)))  # paced at the per-second limit
    with pytest.raises(Blocked, match="no grant within"):
        g.grant(clock.now(), deadline=60)  # the hourly limit holds: the 4th waits an hour


def test_a_window_held_shut_is_named_in_the_run_log() -> None:
    """A file 1.5x too high against 200 per 10 s that names no wait: the probe refused 10 s in says why the
    pace falls to 19/s, not only that it does; the probe after that finds the window open."""
    clock, events = FakeClock(), []
    spec = load_sources().apis["demo"].model_copy(update={"rate_limits": [RateLimitSpec(rate=30)]})
    shared = ApiShared("demo", spec, open_store("memory://"), "demo:test", clock)
    g = EndpointGuard(shared, "events_offset", rng=random.Random(0), on_event=lambda *e: events.append(e))
    began = clock.now()
    for _ in range(200):
        g.written(g.grant(clock.now(), deadline=60))
        g.on_answer(200, {})
    g.grant(clock.now(), deadline=60)
    while clock.now() - began < 10:  # the window is shut until its first requests age out
        assert g.on_answer(429, {}).rate_limited
        g.grant(clock.now(), deadline=60)
    shut = [message for kind, message in events if kind == "pace" and "window is still shut" in message]
    assert len(shut) == 1 and "it took 20.55 req/s); pacing at 19.52 req/s" in shut[0], events  # 200 in 9.73 s
    assert "back to 19.52 within 5s" in shut[0]  # it settled there: no climb back to the 29.7 that drew the 429


class LockedFor(MemoryStore):
    """A store whose lock another process holds for `seconds` (of the fake clock) before each decision."""

    def __init__(self, seconds: float) -> None:
        super().__init__("memory://")
        self.seconds = seconds

    def acquire(self, namespace, limits, cost, clock, *, dry_run=False):
        clock.sleep(self.seconds)
        return super().acquire(namespace, limits, cost, clock, dry_run=dry_run)


def test_a_grant_is_stamped_when_the_store_decided_not_when_it_was_asked_for() -> None:
    """A grant decided after a wait for the store's lock counts its lateness from the decision: from the
    ask, every write after such a wait looked late, and pushed the next grant back for nothing."""
    clock = FakeClock()
    spec = load_sources().apis["demo"].model_copy(update={"rate_limits": [RateLimitSpec(rate=20)]})
    g = EndpointGuard(ApiShared("demo", spec, LockedFor(0.3), "demo:lock", clock), "events_offset",
                      rng=random.Random(0))  # fmt: skip
    asked = clock.now()
    assert g.grant(asked, deadline=60) == pytest.approx(asked + 0.3, abs=1e-6)

"""The endpoint guard on a fake clock: pacing, and a late write pushing the next grant back."""

from __future__ import annotations

import itertools
import random

import pytest

from rl_pipeline.clock import FakeClock
from rl_pipeline.errors import Blocked
from rl_pipeline.guard import ApiShared, EndpointGuard
from rl_pipeline.sources import RateLimitSpec, load_sources
from rl_pipeline.state import open_store


def guard(clock: FakeClock) -> EndpointGuard:
    spec = load_sources().apis["demo"].model_copy(update={"rate_limits": [RateLimitSpec(rate=20, burst=20)]})
    shared = ApiShared("demo", spec, open_store("memory://"), "demo:test", clock)
    return EndpointGuard(shared, "events_offset", rng=random.Random(0))


def test_requests_are_paced_evenly_whatever_burst_the_file_allows() -> None:
    clock = FakeClock()
    g = guard(clock)
    grants = []
    for _ in range(10):
        grants.append(g.admit(clock.now(), deadline=60).granted_at)
        g.written(grants[-1])
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(grants)}
    assert gaps == {round(1 / (20 * 0.95), 6)}  # no burst of 20: one every 1/19 s


@pytest.mark.parametrize(("late", "pushed"), [(0.0005, 0.0), (0.004, 0.004)])
def test_a_late_write_pushes_the_next_grant_back(late: float, pushed: float) -> None:
    clock = FakeClock()
    g = guard(clock)
    granted = g.admit(clock.now(), deadline=60).granted_at
    clock.advance(late)
    g.written(granted)
    following = g.admit(clock.now(), deadline=60).granted_at
    interval = 1 / (20 * 0.95)  # a send under 1 ms late changes nothing
    assert following == pytest.approx(granted + interval + pushed, abs=1e-6)


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
    grants = [g.admit(clock.now(), deadline=60).granted_at for _ in range(3)]
    assert grants[-1] - grants[0] == pytest.approx(2 / (2 * 0.95))  # paced at the per-second limit
    with pytest.raises(Blocked, match="no grant within"):
        g.admit(clock.now(), deadline=60)  # the hourly limit holds: the 4th waits an hour

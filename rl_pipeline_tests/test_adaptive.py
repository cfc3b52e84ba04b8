"""Learning an unpublished limit: AIMD on the clock, then against the demo API."""

from __future__ import annotations

from datetime import date

import pytest

from rl_pipeline.client import ApiClient
from rl_pipeline.clock import FakeClock
from rl_pipeline.demo_api import day_records
from rl_pipeline.limits.adaptive import AdaptiveRate, AimdPolicy
from rl_pipeline.sources import AdaptiveSpec, load_sources
from rl_pipeline.state import open_store
from rl_pipeline_tests.conftest import TOKEN

POLICY = AimdPolicy(initial_rate=10, min_rate=1, max_rate=40, increase=2, decrease=0.5, cooldown=1)


def test_increase_is_additive_per_second_and_decrease_multiplicative(store, namespace) -> None:
    clock = FakeClock()
    rate = AdaptiveRate(store, f"{namespace}:rate", POLICY, clock)
    assert rate.current() == 10
    for _ in range(10):  # one second's worth of successes at 10 req/s
        rate.on_success()
    assert rate.current() == pytest.approx(12, abs=0.2)
    assert rate.on_throttled() == pytest.approx(rate.current()) == pytest.approx(6, abs=0.2)
    assert rate.on_throttled() == pytest.approx(6, abs=0.2)  # in-flight 429s in the cooldown: no second halving
    clock.advance(1.0)
    assert rate.on_throttled() == pytest.approx(3, abs=0.2)
    for _ in range(5):
        clock.advance(1.0)
        rate.on_throttled()
    assert rate.current() == 1  # never below min_rate
    again = AdaptiveRate(store, f"{namespace}:rate", POLICY, clock)
    assert again.current() == 1  # the next run starts from what was learned


def test_an_unpublished_limit_is_learned_against_the_demo_api(make_demo_api, tmp_path) -> None:
    server = make_demo_api(rate=6, burst=1, limit_headers=False)
    spec = (
        load_sources()
        .apis["demo"]
        .model_copy(
            update={"rate_limits": [], "adaptive": AdaptiveSpec(initial_rate=30, min_rate=1, max_rate=100, increase=1)}
        )
    )
    store_url = f"sqlite:///{tmp_path}/state.sqlite"
    client = ApiClient("demo", spec, token=TOKEN, store=open_store(store_url))
    days = [date(2024, 1, 4), date(2024, 1, 23)]  # 14 + 11 pages
    got = [r for day in days for page in client.fetch_day("events_offset", day) for r in page.records]
    assert got == [r for day in days for r in day_records(42, day)]
    learned = client.adaptive.current()
    assert 1 <= learned < 12, learned  # from 30 down to about the real 6 req/s
    first_run_429s = client.stats.rate_limited
    assert first_run_429s > 0

    # A second run on the same store starts from the learned rate and is refused far less.
    server.api.reset()
    second = ApiClient("demo", spec, token=TOKEN, store=open_store(store_url))
    got = [r for page in second.fetch_day("events_offset", days[0]) for r in page.records]
    assert got == day_records(42, days[0])
    assert second.stats.rate_limited < first_run_429s

"""The quota ledger on every store, and the forecast, on an injected clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from rl_pipeline.clock import FakeClock, in_words
from rl_pipeline.errors import QuotaExhausted
from rl_pipeline.quota import QuotaLedger, QuotaPolicy, Usage, forecast


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_the_daily_quota_is_never_passed_and_resets_at_midnight(store, namespace) -> None:
    clock = FakeClock(start=at("2026-03-31T23:59:00"))
    ledger = QuotaLedger(store, namespace, QuotaPolicy(daily=3, monthly=100), clock)
    for _ in range(3):
        ledger.charge()
    with pytest.raises(
        QuotaExhausted,
        match=r"daily quota of 3 requests for test-\w+ is used up \(3 used\); resets at 2026-04-01T00:00:00Z",
    ):
        ledger.charge()
    assert ledger.usage().day_used == 3  # the refused charge counted nothing
    clock.advance(60)
    ledger.charge()
    assert (ledger.usage().day_used, ledger.usage().month_used) == (1, 1)  # a new day, and a new month


def test_d16_hosts_with_skewed_clocks_never_flip_the_ledger_between_days(store, namespace) -> None:
    """Host A's clock is 2 s ahead of host B's: at the reset A is in the new day, B still in the old."""
    policy = QuotaPolicy(daily=10)
    a = QuotaLedger(store, namespace, policy, FakeClock(start=at("2026-04-01T00:00:01")))
    b = QuotaLedger(store, namespace, policy, FakeClock(start=at("2026-03-31T23:59:59")))
    sent = 0
    for _ in range(30):
        for host in (a, b):
            try:
                host.charge()
                sent += 1
            except QuotaExhausted:
                pass
    assert sent == 10  # the new day's 10, charged by both; not 30 + 30 with the ledger flipping
    assert a.usage().day_used == b.usage().day_used == 10


def test_the_monthly_quota_holds_across_days(store, namespace) -> None:
    clock = FakeClock(start=at("2026-02-10T12:00:00"))
    ledger = QuotaLedger(store, namespace, QuotaPolicy(daily=10, monthly=15), clock)
    for _ in range(10):
        ledger.charge()
    clock.advance(86400)
    for _ in range(5):
        ledger.charge()
    with pytest.raises(QuotaExhausted, match="monthly quota of 15") as refused:
        ledger.charge()
    assert refused.value.resets_at == at("2026-03-01T00:00:00")


def test_a_configured_reset_hour(store, namespace) -> None:
    clock = FakeClock(start=at("2026-05-05T06:59:00"))
    ledger = QuotaLedger(store, namespace, QuotaPolicy(daily=1, reset_hour=7), clock)
    ledger.charge()
    with pytest.raises(QuotaExhausted, match="resets at 2026-05-05T07:00:00Z"):
        ledger.charge()
    clock.advance(60)
    ledger.charge()


def test_the_ledger_follows_what_the_server_reports(store, namespace) -> None:
    ledger = QuotaLedger(store, namespace, QuotaPolicy(daily=100), FakeClock())
    ledger.charge()
    ledger.follow_server(day_remaining=40)  # someone else used 59 with this key today
    assert ledger.usage().day_left == 40
    ledger.follow_server(day_remaining=90)  # never believe in more than we know was used
    assert ledger.usage().day_left == 40


def test_a_quota_the_server_says_is_spent_says_how_much_of_it_was_its_own(store, namespace) -> None:
    """The file says 50,000 a day; the server's count says none is left after 300: its quota is smaller,
    or someone else shares the key. The refusal says how many of them were its own."""
    ledger = QuotaLedger(store, namespace, QuotaPolicy(daily=50_000), FakeClock())
    for _ in range(300):
        ledger.charge()
    ledger.follow_server(day_remaining=0)
    with pytest.raises(QuotaExhausted, match=r"\(50000 used by the server's count, 300 by ours\)"):
        ledger.charge()
    assert ledger.usage().day_used == 50_000


def test_a_ledger_kept_by_an_earlier_version_is_read_as_all_its_own(store, namespace) -> None:
    clock = FakeClock(start=at("2026-03-31T12:00:00"))
    ledger = QuotaLedger(store, namespace, QuotaPolicy(daily=3), clock)
    store.set(ledger.key, f"{at('2026-03-31T00:00:00')!r},3,{at('2026-03-01T00:00:00')!r},3")
    with pytest.raises(QuotaExhausted, match=r"\(3 used\)"):
        ledger.charge()


def usage(day_left, month_left, now) -> Usage:
    return Usage(0, 0, day_left, month_left, at("2026-01-02T00:00:00"), at("2026-02-01T00:00:00"))


def test_forecast_within_today_is_limited_by_the_rate() -> None:
    now = at("2026-01-01T10:00:00")
    result = forecast(10, 5, 10.0, usage(1000, math.inf, now), QuotaPolicy(daily=1000), now)
    assert (result.requests, result.limited_by) == (50, "rate")
    assert result.finishes_at == pytest.approx(now + 5)


def test_forecast_waits_for_daily_resets_and_keeps_the_reserve() -> None:
    now = at("2026-01-01T10:00:00")
    policy = QuotaPolicy(daily=1000)
    result = forecast(500, 5, 10.0, usage(600, math.inf, now), policy, now, reserve=100)
    # 2,500 requests: 500 today, then 900 a day: Jan 2, Jan 3, and the last 200 on Jan 4.
    assert result.limited_by == "daily quota"
    assert result.finishes_at == pytest.approx(at("2026-01-04T00:00:00") + 20)


def test_forecast_waits_for_the_monthly_reset() -> None:
    now = at("2026-01-31T10:00:00")
    policy = QuotaPolicy(daily=1000, monthly=5000)
    u = Usage(0, 4900, 1000, 100, at("2026-02-01T00:00:00"), at("2026-02-01T00:00:00"))
    result = forecast(30, 10, 10.0, u, policy, now)
    assert result.finishes_at == pytest.approx(at("2026-02-01T00:00:00") + 20)


def test_a_backfill_stops_cleanly_when_the_ledger_is_empty(make_demo_api, tmp_path, monkeypatch) -> None:
    import dagster as dg
    import yaml

    from rl_pipeline.sources import SHIPPED_SOURCES
    from rl_pipeline.warehouse import Warehouse
    from rl_pipeline_tests.support import expected_rows, materialize_range, table_rows

    sources = yaml.safe_load(SHIPPED_SOURCES.read_text())
    sources["apis"]["demo"]["quota"] = {"daily": 12}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources))
    monkeypatch.setenv("RL_SOURCES_FILE", str(tmp_path / "sources.yaml"))
    server = make_demo_api()
    warehouse, instance = Warehouse(tmp_path / "w.duckdb"), dg.DagsterInstance.ephemeral()
    store = f"sqlite:///{tmp_path}/s.sqlite"
    # One day at a time, so which days finish before the quota runs out is certain.
    result = materialize_range(
        ["events_offset"], "2024-01-01", "2024-01-10", warehouse, store, instance, workers=1, max_workers=1
    )
    assert not result.success
    message = str(result.failure_data_for_node("events_offset").error)
    assert "source demo.events_offset, partition 2024-01-04, page" in message
    assert "daily quota of 12 requests for demo is used up (12 used); resets at " in message
    assert len(server.api.stats()["requests"]) == 12  # never one more than the quota
    done = sorted(instance.get_materialized_partitions(dg.AssetKey("events_offset")))
    assert done == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert table_rows(warehouse, "events_offset")[1] == expected_rows(done)


@pytest.mark.parametrize(
    ("seconds", "words"), [(0.4, "0 s"), (40, "40 s"), (95, "2 min"), (3000, "50 min"), (12_240, "3.4 h"),
                           (216_000, "2.5 days")],
)  # fmt: skip
def test_a_forecast_says_how_long_in_the_unit_that_fits(seconds: float, words: str) -> None:
    assert in_words(seconds) == words
    now = at("2026-01-01T10:00:00")
    assert f"(in {words}, limited by the rate)" in forecast(
        1, 1, 1 / seconds, usage(10, 10, now), QuotaPolicy(), now
    ).describe(now)

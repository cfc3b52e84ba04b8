"""Concurrent backfill runs, each its own process, share one rate budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import expected_rows, start_backfill, table_rows

RATE, BURST = 20, 20  # the demo API's published limit in the shipped sources file
RANGES = [("2024-01-01", "2024-01-10"), ("2024-01-11", "2024-01-20"), ("2024-01-21", "2024-01-30")]


def run_concurrently(store_url: str, warehouse: Warehouse, ranges=RANGES) -> None:
    processes = [start_backfill("events_offset", first, last, store_url, warehouse) for first, last in ranges]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_concurrent_runs_at_the_published_limit_get_no_429(kind, make_demo_api, tmp_path: Path, request) -> None:
    server = make_demo_api(rate=RATE, burst=BURST, limit_headers=False)  # nothing to learn from: the budget must hold
    store_url = f"sqlite:///{tmp_path}/state.sqlite" if kind == "sqlite" else request.getfixturevalue("redis_url")
    if kind == "redis":
        import redis

        redis.Redis.from_url(store_url).flushdb()
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    run_concurrently(store_url, warehouse)

    stats = server.api.stats()
    assert stats["by_status"] == {"200": len(stats["requests"])}
    assert len(stats["requests"]) > 3 * BURST  # enough to run past the burst into the steady rate
    assert stats["most_in_any_second"] <= RATE + BURST
    days = [f"2024-01-{d:02d}" for d in range(1, 31)]
    count, rows = table_rows(warehouse, "events_offset")
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected


def test_private_limiters_per_process_overrun_the_api(make_demo_api, tmp_path: Path) -> None:
    """The control: the same runs, each with its own in-memory budget, draw 429s."""
    server = make_demo_api(rate=RATE, burst=BURST, limit_headers=False)
    # Longer runs than above (~5 s each at the private rate), so the processes overlap even on a busy machine.
    months = [("2024-02-01", "2024-02-29"), ("2024-03-01", "2024-03-31"), ("2024-04-01", "2024-04-30")]
    run_concurrently("memory://", Warehouse(tmp_path / "warehouse.duckdb"), months)
    assert server.api.stats()["by_status"].get("429", 0) > 0

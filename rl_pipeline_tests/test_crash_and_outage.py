"""Real processes under real trouble: kill -9, a mix of faults, an outage, and secrets."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from rl_pipeline.defs.resources import RateLimitedApi
from rl_pipeline.demo_api import day_records
from rl_pipeline.demo_api.faults import Faults
from rl_pipeline.sources import SHIPPED_SOURCES
from rl_pipeline.warehouse import PARTITIONS_TABLE, Warehouse
from rl_pipeline_tests.support import day_range, expected_rows, materialize_range, start_backfill, table_rows


def wait_until(condition, process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the backfill ended early: {process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def finish(process) -> list[dict]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_kill_9_mid_backfill_then_rerun_gives_the_exact_dataset(make_demo_api, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # a real instance, kept across both runs
    server = make_demo_api(rate=15, burst=5)
    days = day_range("2024-01-01", "2024-01-12")

    def pages(day: str) -> int:
        return max(1, math.ceil(len(day_records(42, date.fromisoformat(day))) / 100))

    full = sum(pages(day) for day in days)
    store, warehouse = f"sqlite:///{tmp_path}/state.sqlite", Warehouse(tmp_path / "warehouse.duckdb")

    run = {"batch_rows": 100, "missing_only": True}
    first = start_backfill("events_offset", days[0], days[-1], store, warehouse, **run)
    wait_until(lambda: len(server.api.stats()["requests"]) >= full // 2, first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    sent_before_kill = len(server.api.stats()["requests"])
    served_before_kill = server.api.stats()["by_status"]["200"]
    assert served_before_kill < full
    # Days written whole whose materialization Dagster had not recorded yet are fetched again (harmlessly).
    recorded = dg.DagsterInstance.get().get_materialized_partitions(dg.AssetKey("events_offset"))
    with warehouse.connect(read_only=True) as conn:
        written = {day for (day,) in conn.execute(f"SELECT partition FROM {PARTITIONS_TABLE}").fetchall()}
    unrecorded_pages = sum(pages(day) for day in written - recorded)

    rerun = finish(
        start_backfill("events_offset", days[0], days[-1], store, warehouse, batch_rows=100, missing_only=True)
    )
    count, rows = table_rows(warehouse, "events_offset")
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected  # none missing, none twice, values equal
    # Days done before the kill were not fetched again, nor the pages checkpointed on the days it died in.
    assert recorded and not recorded & {day["partition"] for day in rerun}
    assert any(day["resumed"] for day in rerun)
    assert sum(day["requests"] for day in rerun) == len(server.api.stats()["requests"]) - sent_before_kill
    # Pages fetched twice: at most one in flight per worker (4), and those of days written but not yet recorded.
    assert sum(day["pages"] for day in rerun) <= full - served_before_kill + 4 + unrecorded_pages


def test_a_backfill_completes_through_5xx_hung_responses_and_429_bursts(make_demo_api, tmp_path: Path) -> None:
    # Seed 7 of the fault generator hangs requests 6, 10, 33 and 34 of the first 60 admitted.
    faults = Faults(seed=7, error_rate=0.05, hang_rate=0.02, hang_seconds=1.5)
    server = make_demo_api(rate=8, burst=3, limit_headers=False, faults=faults)  # slower than the client believes
    days = day_range("2024-01-03", "2024-01-12")
    store, warehouse = f"sqlite:///{tmp_path}/state.sqlite", Warehouse(tmp_path / "warehouse.duckdb")
    config = {"read_timeout": 0.5, "base_delay": 0.05, "max_delay": 1.0, "max_attempts": 12}
    report = finish(start_backfill("events_cursor", days[0], days[-1], store, warehouse, **config))

    count, rows = table_rows(warehouse, "events_cursor")
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected
    stats = server.api.stats()
    seen = Counter()
    for day in report:
        seen.update(day["statuses"])
    assert stats["faults"]["hang"] == seen["ReadTimeout"] >= 2  # every hang was timed out and retried
    assert stats["faults"]["error"] == sum(seen[s] for s in ("500", "502", "503", "504")) >= 2
    assert stats["by_status"]["429"] == seen["429"] > 0


def test_an_outage_opens_the_circuit_and_the_backfill_finishes_after_it(
    make_demo_api, tmp_path: Path, monkeypatch
) -> None:
    sources = yaml.safe_load(SHIPPED_SOURCES.read_text())
    sources["apis"]["demo"]["circuit_breaker"] = {"consecutive_failures": 3, "cooldown": 1.0, "max_wait": 60}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources))
    monkeypatch.setenv("RL_SOURCES_FILE", str(tmp_path / "sources.yaml"))
    server = make_demo_api(rate=20, burst=20)
    days = day_range("2024-01-01", "2024-01-12")
    store, warehouse = f"sqlite:///{tmp_path}/state.sqlite", Warehouse(tmp_path / "warehouse.duckdb")

    process = start_backfill("events_offset", days[0], days[-1], store, warehouse, base_delay=0.05, max_delay=0.2)
    wait_until(lambda: len(server.api.stats()["requests"]) >= 10, process)
    outage_start = time.time()
    server.api.config.faults.outage_until = outage_end = outage_start + 4.0
    report = finish(process)

    during = [t for t, status, _ in server.api.stats()["requests"] if outage_start <= t < outage_end]
    # 3 failures open it; then one probe per 1 s cool-down; retries alone would have hammered on (and given up).
    assert len(during) <= 3 + 5 + 2
    assert sum(day["circuit_wait_s"] for day in report) > 2.0
    count, rows = table_rows(warehouse, "events_offset")
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected


SECRET = "test-secret-4f9aT0PsEcReT"  # fake; the test proves it never leaks


def test_the_token_reaches_no_log_metadata_error_cell_or_repr(
    make_demo_api, tmp_path: Path, monkeypatch, capfd
) -> None:
    make_demo_api(token=SECRET, faults=Faults(missing_id_on=date(2024, 1, 5), error_rate=0.1))
    monkeypatch.setenv("RL_DEMO_API_TOKEN", SECRET)
    store, warehouse = f"sqlite:///{tmp_path}/state.sqlite", Warehouse(tmp_path / "warehouse.duckdb")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(
        ["events_offset"], "2024-01-03", "2024-01-06", warehouse, store, instance=instance, base_delay=0.01
    )
    assert not result.success  # a failing backfill, after writing two days

    texts = [str(result.failure_data_for_node("events_offset").error)]
    texts += [str(record) for record in instance.all_logs(result.run_id)]
    texts += list(capfd.readouterr())
    texts += [repr(RateLimitedApi(api="demo", token=dg.EnvVar("RL_DEMO_API_TOKEN"), state_store=store))]
    with duckdb.connect(str(warehouse.path), read_only=True) as conn:
        texts += [str(row) for row in conn.execute("SELECT * FROM events_offset").fetchall()]
    assert len(texts) > 50
    assert not [text for text in texts if SECRET in text]
    assert SECRET.encode() not in (tmp_path / "state.sqlite").read_bytes()
    assert SECRET.encode() not in warehouse.path.read_bytes()


@pytest.mark.parametrize("name", ['x"; DROP TABLE events_offset; --', "has space", "ünïcode"])
def test_odd_field_names_from_the_api_are_quoted_not_executed(name: str, warehouse: Warehouse) -> None:
    from datetime import UTC, datetime

    warehouse.upsert("t", [{"id": 1, name: "v"}], partition="2024-01-01", fetched_at=datetime.now(UTC))
    with warehouse.connect(read_only=True) as conn:
        assert [c[0] for c in conn.execute("DESCRIBE t").fetchall()][:2] == ["id", name]

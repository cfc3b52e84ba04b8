"""Every pagination style, end to end through Dagster, against the demo API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rl_pipeline.definitions import build_definitions
from rl_pipeline.defs.checks import check_results
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import DAYS, TOKEN, expected_rows, materialize_range, table_rows

ENDPOINTS = ["events_offset", "events_pages", "events_cursor", "events_link"]


def materialize(endpoints: list[str], first: str, last: str, warehouse: Warehouse, store_url: str):
    return materialize_range(endpoints, first, last, warehouse, store_url)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_each_pagination_style_lands_the_exact_dataset_and_replays_cleanly(
    endpoint: str, demo_api, warehouse: Warehouse, store_url: str
) -> None:
    days = [f"2024-01-{d:02d}" for d in range(3, 10)]  # includes a 1,344-record day and an empty one
    assert DAYS[1] in days and DAYS[2] in days
    result = materialize([endpoint], days[0], days[-1], warehouse, store_url)
    assert result.success
    expected = expected_rows(days)
    count, rows = table_rows(warehouse, endpoint)
    assert count == len(expected) > 1344
    assert rows == expected

    materializations = result.asset_materializations_for_node(endpoint)
    assert sorted(m.partition for m in materializations) == days  # one per day, with that day's numbers
    assert sum(m.metadata["records"].value for m in materializations) == len(expected)
    assert all(m.metadata["http_429"].value == 0 for m in materializations)

    again = materialize([endpoint], days[2], days[4], warehouse, store_url)
    assert again.success
    assert table_rows(warehouse, endpoint) == (count, rows)


def test_partition_status_is_recorded_per_day(demo_api, warehouse: Warehouse, store_url: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(["events_offset"], "2024-01-01", "2024-01-03", warehouse, store_url, instance=instance)
    assert result.success
    done = instance.get_materialized_partitions(dg.AssetKey("events_offset"))
    assert done == {"2024-01-01", "2024-01-02", "2024-01-03"}

    # Dagster's table keys, read back through the instance as its catalog reads them.
    event = instance.get_latest_materialization_event(dg.AssetKey("events_offset"))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    day = event.asset_materialization.partition
    with warehouse.connect(read_only=True) as conn:
        total, in_day = conn.execute(
            "SELECT count(*), count(*) FILTER (_partition = ?) FROM events_offset", [day]
        ).fetchone()
        described = {name: kind for name, kind, *_ in conn.execute("DESCRIBE events_offset").fetchall()}
    assert metadata["dagster/table_name"].value == "warehouse.main.events_offset"
    assert metadata["dagster/row_count"].value == total and metadata["dagster/partition_row_count"].value == in_day
    columns = {column.name: column.type for column in metadata["dagster/column_schema"].value.columns}
    assert columns == described and "id" in columns


def test_missing_token_fails_with_the_variable_named(demo_api, warehouse, store_url, monkeypatch) -> None:
    monkeypatch.delenv("RL_DEMO_API_TOKEN")
    with pytest.raises(Exception, match="RL_DEMO_API_TOKEN"):
        materialize(["events_offset"], DAYS[0], DAYS[0], warehouse, store_url)


def test_wrong_token_fails_fast_naming_source_partition_and_status(demo_api, warehouse, store_url, monkeypatch) -> None:
    monkeypatch.setenv("RL_DEMO_API_TOKEN", "not-the-token")
    result = materialize(["events_offset"], DAYS[0], DAYS[0], warehouse, store_url)
    assert not result.success
    message = str(result.failure_data_for_node("events_offset").error)
    assert "source demo.events_offset, partition 2024-01-03, page 1" in message
    assert "HTTP 401" in message and "not-the-token" not in message
    assert demo_api.api.stats()["by_status"] == {"401": 1}  # 4xx is not retried


def test_definitions_validate_in_a_fresh_process() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(root), "DAGSTER_HOME": ""},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_definitions_have_a_daily_schedule_and_backfill_policy() -> None:
    defs = build_definitions()
    schedule = defs.resolve_schedule_def("demo_daily_schedule")
    assert schedule.cron_schedule == "15 0 * * *"
    asset = defs.resolve_assets_def("events_cursor")
    assert asset.backfill_policy is not None and asset.backfill_policy.max_partitions_per_run > 1


def checks(warehouse: Warehouse) -> dict[str, dg.AssetCheckResult]:
    return {r.check_name: r for r in check_results(warehouse, "events_offset", "id")}


def test_asset_checks_run_with_every_materialization_and_name_what_breaks(
    demo_api, warehouse: Warehouse, store_url
) -> None:
    result = materialize(["events_offset"], "2024-01-03", "2024-01-05", warehouse, store_url)
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["unique_ids"].passed and evaluations["rows_match_api"].passed
    assert evaluations["rows_match_api"].metadata["partitions_checked"].value == 3

    with warehouse.connect() as conn:
        conn.execute("DELETE FROM events_offset WHERE _partition = '2024-01-04' AND id LIKE '%1'")
        # A table someone rebuilt without its key, with a row twice:
        conn.execute("CREATE TABLE copy AS SELECT * FROM events_offset")
        conn.execute("DROP TABLE events_offset")
        conn.execute("CREATE TABLE events_offset AS SELECT * FROM copy UNION ALL (SELECT * FROM copy LIMIT 1)")
    broken = checks(warehouse)
    assert not broken["unique_ids"].passed and broken["unique_ids"].metadata["duplicates"].value == 1
    assert not broken["rows_match_api"].passed
    assert "| 2024-01-04 | 1344 |" in broken["rows_match_api"].metadata["mismatches"].value

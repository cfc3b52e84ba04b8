"""Daily incrementals: the schedule's ticks, late-arriving records, gaps, staleness."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from rl_pipeline.definitions import build_definitions
from rl_pipeline.defs.partitions import RANGE_END, RANGE_START
from rl_pipeline.defs.usage import backlogs
from rl_pipeline.demo_api.faults import Faults
from rl_pipeline.sources import SHIPPED_SOURCES, load_sources
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import day_range, expected_rows, materialize_range, table_rows, write_sources
from rl_pipeline_tests.test_quota_sensor import ranges, tick

ASSETS = ["events_cursor", "events_link", "events_offset", "events_pages"]


def runs_at(schedule: dg.ScheduleDefinition, when: str) -> dict[tuple[str, str], list[str]] | str:
    """What the schedule asks for at the instant `when` (UTC): {(first, last): assets}, or why it skips."""
    moment = datetime.fromisoformat(when).replace(tzinfo=UTC)
    result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=moment))
    if not result.run_requests:
        return result.skip_message or ""
    return {
        (r.tags[RANGE_START], r.tags[RANGE_END]): sorted(k.path[-1] for k in r.asset_selection)
        for r in result.run_requests
    }


def test_each_tick_asks_for_the_day_that_just_ended(tmp_path: Path) -> None:
    schedule = build_definitions().resolve_schedule_def("demo_daily_schedule")
    assert schedule.cron_schedule == "15 0 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # on when the user turns it on
    assert runs_at(schedule, "2024-06-11T00:15:00") == {("2024-06-10", "2024-06-10"): ASSETS}
    assert runs_at(schedule, "2024-03-01T00:15:00") == {("2024-02-29", "2024-02-29"): ASSETS}  # leap day
    assert runs_at(schedule, "2025-01-01T00:15:00") == {("2024-12-31", "2024-12-31"): ASSETS}  # year's end
    assert runs_at(schedule, "2024-01-02T00:15:00") == {("2024-01-01", "2024-01-01"): ASSETS}  # the first day
    assert "no complete day yet" in runs_at(schedule, "2024-01-01T00:15:00")  # before it


def test_lookback_days_fetch_the_days_before_again(tmp_path: Path) -> None:
    endpoints = yaml.safe_load(SHIPPED_SOURCES.read_text())["apis"]["demo"]["endpoints"]
    endpoints["events_offset"]["lookback_days"] = 3
    path = write_sources(tmp_path / "sources.yaml", endpoints=endpoints)
    schedule = build_definitions(sources_file=str(path)).resolve_schedule_def("demo_daily_schedule")
    others = [a for a in ASSETS if a != "events_offset"]
    assert runs_at(schedule, "2024-06-11T00:15:00") == {
        ("2024-06-07", "2024-06-10"): ["events_offset"],
        ("2024-06-10", "2024-06-10"): others,
    }
    # Never before the first day.
    assert runs_at(schedule, "2024-01-03T00:15:00")[("2024-01-01", "2024-01-02")] == ["events_offset"]


def test_late_records_arrive_with_the_next_daily_run_and_nothing_duplicates(
    make_demo_api, warehouse: Warehouse, store_url: str
) -> None:
    """The API adds 4 records to 2024-01-05 and edits 2 after the day was fetched; the next daily run,
    looking back a day, brings them, and says so in the day's metadata."""
    server = make_demo_api()
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_range(
        ["events_offset"], "2024-01-05", "2024-01-05", warehouse, store_url, instance=instance
    ).success
    late = Faults(late_on=date(2024, 1, 5), late_added=4, late_changed=2)
    server.api.config.faults = late
    # The 2024-01-07 00:15 tick with lookback_days: 1 asks for 2024-01-05..2024-01-06.
    result = materialize_range(["events_offset"], "2024-01-05", "2024-01-06", warehouse, store_url, instance=instance)
    assert result.success
    days = day_range("2024-01-05", "2024-01-06")
    count, rows = table_rows(warehouse, "events_offset")
    assert count == len(expected_rows(days, faults=late)) and rows == expected_rows(days, faults=late)
    meta = {m.partition: m.metadata for m in result.asset_materializations_for_node("events_offset")}
    assert (meta["2024-01-05"]["new_records"].value, meta["2024-01-05"]["changed_records"].value) == (4, 2)
    assert meta["2024-01-06"]["new_records"].value == len(expected_rows(["2024-01-06"]))


def test_a_gap_shows_in_status_and_the_quota_sensor_fills_it(demo_api, warehouse: Warehouse, store_url: str) -> None:
    """The schedule was off for a day (or its run failed): the day is missing, and the sensor launches it."""
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2024-01-01", "2024-01-02", "2024-01-04"):
        assert materialize_range(["events_offset"], day, day, warehouse, store_url, instance=instance).success
    rows = {row.asset: row for row in backlogs(load_sources(), instance)}
    total = rows["events_offset"].partitions
    assert (rows["events_offset"].materialized, rows["events_offset"].missing) == (3, total - 3)
    assert ranges(tick(instance, store_url))["events_offset"] == ("2024-01-03", "2024-01-03")


@pytest.mark.parametrize("materialized", [False, True])
def test_an_asset_whose_latest_day_is_missing_fails_its_freshness_check(
    make_demo_api, warehouse: Warehouse, store_url: str, tmp_path: Path, monkeypatch, materialized: bool
) -> None:
    make_demo_api()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    schedule = {"fresh_by": "0 0 * * *"}  # past every day at midnight: yesterday must be in by now
    path = write_sources(tmp_path / "sources.yaml", start_date=two_days_ago, schedule=schedule)
    monkeypatch.setenv("RL_SOURCES_FILE", str(path))
    instance = dg.DagsterInstance.ephemeral()
    last = yesterday if materialized else two_days_ago
    assert materialize_range(["events_offset"], two_days_ago, last, warehouse, store_url, instance=instance).success
    defs = build_definitions(sources_file=str(path))
    checks, assets = list(defs.asset_checks), [defs.resolve_assets_def(a) for a in ASSETS]
    result = dg.materialize([*assets, *checks], selection=dg.AssetSelection.checks(*checks), instance=instance)
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("events_offset")]
    assert evaluation.passed is materialized

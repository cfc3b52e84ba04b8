"""The whole product under `dagster dev`: the quota sensor under the daemon, and the UI in a real browser."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from rl_pipeline.defs.partitions import RANGE_END, RANGE_START
from rl_pipeline.sources import SHIPPED_SOURCES
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import day_range, expected_rows, required, running_dagster_dev, table_rows

DAYS = 3
DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass
class DagsterDev:
    url: str
    home: Path
    data: Path
    env: dict[str, str]
    days: list[str]

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def materialized(self, asset: str) -> set[str]:
        with self.instance() as instance:
            return instance.get_materialized_partitions(dg.AssetKey(asset))


@pytest.fixture
def dagster_dev(request: pytest.FixtureRequest, make_demo_api, tmp_path: Path) -> Iterator[DagsterDev]:
    """`dagster dev` on a free port, its own instance, the demo API, and sources whose history is the last days
    (the demo API's part of them changed by the test's `sources` marker, if any)."""
    make_demo_api(rate=50, burst=50)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    first = yesterday - timedelta(days=DAYS - 1)
    sources = yaml.safe_load(SHIPPED_SOURCES.read_text())
    sources["apis"]["demo"]["start_date"] = first.isoformat()
    if marker := request.node.get_closest_marker("sources"):
        sources["apis"]["demo"].update(marker.kwargs)
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "RL_SOURCES_FILE": str(tmp_path / "sources.yaml"),
        "DAGSTER_HOME": str(home),
        "RL_DATA_DIR": str(tmp_path / "data"),
    }
    with running_dagster_dev(env, tmp_path, tmp_path / "dagster_dev.log") as url:
        yield DagsterDev(url, home, tmp_path / "data", env, day_range(first.isoformat(), yesterday.isoformat()))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


ASSETS = ["events_offset", "events_pages", "events_cursor", "events_link"]
SCHEDULED_AT = ".dagster/scheduled_execution_time"  # the tag Dagster's scheduler puts on a tick's runs (UTC)


def test_the_quota_sensor_backfills_everything_under_the_daemon(dagster_dev: DagsterDev) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "dagster", "sensor", "start", "demo_quota_sensor", "-m", "rl_pipeline.definitions"],
        env=dagster_dev.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: all(dagster_dev.materialized(asset) >= set(dagster_dev.days) for asset in ASSETS),
        timeout=300,
        what="the sensor's runs",
    )
    warehouse = Warehouse(dagster_dev.data / "warehouse.duckdb")
    for asset in ASSETS:
        count, rows = table_rows(warehouse, asset)
        expected = expected_rows(dagster_dev.days)
        assert count == len(expected) and rows == expected
    with dagster_dev.instance() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "demo_quota_sensor"}))
    assert len(runs) == len(ASSETS)  # one ranged run per asset, none launched twice


@pytest.mark.sources(schedule={"cron": "* * * * *", "running": True})
def test_the_daily_schedule_lands_the_day_that_ended_under_the_daemon(dagster_dev: DagsterDev) -> None:
    """A schedule from the same factory, on from the start and ticking every minute: the daemon's tick
    launches a run of the day before it, which lands in the warehouse, and nothing else."""

    def schedule_runs() -> list[dg.DagsterRun]:
        with dagster_dev.instance() as instance:
            return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/schedule_name": "demo_daily_schedule"}))

    wait_for(lambda: any(run.is_finished for run in schedule_runs()), timeout=240, what="the schedule's run")
    finished = [run for run in schedule_runs() if run.is_finished]
    # The day before the tick's own time, not the test's: a tick after midnight UTC fetches the day just ended.
    ticked = {datetime.fromisoformat(run.tags[SCHEDULED_AT]).date() for run in finished}
    yesterday = (min(ticked) - timedelta(days=1)).isoformat()
    assert {(run.tags[RANGE_START], run.tags[RANGE_END], run.status) for run in finished} == {
        (yesterday, yesterday, dg.DagsterRunStatus.SUCCESS)
    }
    assert all(dagster_dev.materialized(asset) == {yesterday} for asset in ASSETS)
    warehouse = Warehouse(dagster_dev.data / "warehouse.duckdb")
    for asset in ASSETS:
        assert table_rows(warehouse, asset)[1] == expected_rows([yesterday])


def api_points(dagster_dev: DagsterDev) -> list[dict[str, float]]:
    """The numbers of each point of `apis/demo`'s picture, newest first."""
    with dagster_dev.instance() as instance:
        records = instance.fetch_observations(dg.AssetKey(["apis", "demo"]), limit=100).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in records]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_a_backfill_launched_from_the_ui_in_a_real_browser(dagster_dev: DagsterDev, tmp_path: Path) -> None:
    browser_path = chromium()
    if browser_path is None:
        if required("BROWSER"):
            pytest.fail("RL_REQUIRE_BROWSER=1 but no Chromium is installed")
        pytest.skip("no Chromium here (apt-get install chromium)")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=browser_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{dagster_dev.url}/assets/events_link", wait_until="networkidle")
            # The UI greets a first visit with a newsletter prompt over everything: skip it.
            prompt = page.get_by_text("Join the Dagster community")
            with contextlib.suppress(PlaywrightTimeout):
                prompt.wait_for(timeout=15_000)
                page.get_by_role("button", name="Skip").click()
                prompt.wait_for(state="hidden")
            page.locator("button", has_text="Materialize").first.click(timeout=60_000)
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("button", name="All", exact=True).click()  # the asset has exactly DAYS partitions
            expect(dialog.get_by_text(f"{DAYS} partitions", exact=True)).to_be_visible(timeout=30_000)
            launch = dialog.get_by_role("button", name="Launch backfill")
            expect(launch).to_be_enabled()
            page.screenshot(path=str(tmp_path / "launch_dialog.png"))
            launch.click()
            wait_for(lambda: dagster_dev.materialized("events_link") >= set(dagster_dev.days), 240, "the backfill")
            page.goto(f"{dagster_dev.url}/assets/events_link?view=partitions", wait_until="networkidle")
            expect(page.get_by_text(f"Materialized ({DAYS})")).to_be_visible(timeout=30_000)  # as the user sees it
            page.screenshot(path=str(tmp_path / "materialized.png"))
            # The API's picture: the usage sensor's points, plotted by Dagster on the asset `apis/demo`.
            wait_for(lambda: len(api_points(dagster_dev)) >= 2, 150, "two points of the API's picture")
            page.set_viewport_size({"width": 1600, "height": 2000})  # all eight plots in one screenshot
            page.goto(f"{dagster_dev.url}/assets/apis/demo", wait_until="networkidle")
            page.get_by_role("button", name="Plots").click()
            for number in ("requests_per_s", "limit_per_s", "learned_per_s", "quota_left", "done_in_hours"):
                expect(page.get_by_text(number, exact=True).first).to_be_visible(timeout=30_000)
            expect(page.locator("canvas").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "api_picture.png"))
            if os.environ.get("RL_UPDATE_SCREENSHOTS"):
                shutil.copy(
                    tmp_path / "api_picture.png", Path(__file__).resolve().parents[1] / "docs" / "api_picture.png"
                )
        finally:
            browser.close()
    points = api_points(dagster_dev)
    assert all(point["limit_per_s"] == 20 for point in points)  # the sources file's limit, the line to read against
    assert any(0 < point["requests_per_s"] <= 20 for point in points)  # the backfill's requests, all workers
    assert points[0]["backlog_days"] == 3 * DAYS  # the other three assets; events_link is done
    count, rows = table_rows(Warehouse(dagster_dev.data / "warehouse.duckdb"), "events_link")
    assert count == len(expected_rows(dagster_dev.days)) and rows == expected_rows(dagster_dev.days)

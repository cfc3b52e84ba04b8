"""`rl-pipeline check`: a day's first pages through the sources file, before any backfill, writing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from rl_pipeline.demo_api import day_records
from rl_pipeline.sources import SHIPPED_SOURCES

DAY = "2024-01-04"  # 1,344 records: every style pages through it


def check(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RL_DATA_DIR": str(workdir / "data"), "DAGSTER_HOME": str(workdir)}
    return subprocess.run(
        [sys.executable, "-m", "rl_pipeline.cli", "check", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=workdir,
    )  # fmt: skip


@pytest.mark.parametrize("asset", ["events_offset", "events_pages", "events_cursor", "events_link"])
def test_each_pagination_style_shows_records_the_next_page_headers_and_types(
    asset: str, make_demo_api, tmp_path: Path
) -> None:
    server = make_demo_api()
    done = check(tmp_path, "--asset", asset, "--day", DAY)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"source demo.{asset}, partition {DAY}, page 1: 100 records, each with 'id'" in out
    assert f"source demo.{asset}, partition {DAY}, page 2: 100 records" in out
    assert "page 3" not in out and "(stopped after 2 page(s): --pages 2)" in out
    assert out.count(f"  next page: GET {server.url}/v1/") == 2  # the request the file makes of each page
    assert "X-RateLimit-Remaining: " in out  # the demo API sends its budget
    columns = dict(line.split(maxsplit=1) for line in out.split("columns (", 1)[1].splitlines()[1:])
    record = day_records(42, date.fromisoformat(DAY))[0]
    assert set(columns) == set(record)
    assert (columns["id"], columns["quantity"], columns["customer"]) == ("VARCHAR", "BIGINT", "JSON")
    assert columns["created_at"] == "TIMESTAMP WITH TIME ZONE"  # 2024-01-04T00:00:00.104Z
    assert len(server.api.stats()["requests"]) == 2  # two pages, nothing more
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()  # nothing written


def test_a_wrong_records_path_says_what_the_body_holds(make_demo_api, tmp_path: Path, monkeypatch) -> None:
    make_demo_api()
    sources = yaml.safe_load(SHIPPED_SOURCES.read_text())
    sources["apis"]["demo"]["endpoints"]["events_offset"]["records_path"] = "results"
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources))
    monkeypatch.setenv("RL_SOURCES_FILE", str(tmp_path / "sources.yaml"))
    done = check(tmp_path, "--asset", "events_offset", "--day", DAY)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"rl-pipeline check: source demo.events_offset, partition {DAY}, page 1: expected a list of records at "
        "'results' (records_path), got nothing; the body is an object with keys: data (list of 100)"
    ), done.stderr


def test_one_page_is_enough_for_a_day_that_has_one(make_demo_api, tmp_path: Path) -> None:
    make_demo_api()
    done = check(tmp_path, "--asset", "events_offset", "--day", "2024-01-09", "--pages", "3")
    assert done.returncode == 0, done.stderr
    assert "next page: none (the last page of the day)" in done.stdout and "stopped after" not in done.stdout

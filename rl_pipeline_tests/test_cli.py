"""The `rl-pipeline` command, run as a user runs it: a real process against the demo API."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import requests

from rl_pipeline.cli.runs import BACKFILL_TAG, FAILURE
from rl_pipeline.defs.partitions import RANGE_START
from rl_pipeline.defs.usage import backlogs
from rl_pipeline.sources import load_sources
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import ADMIN, day_range, expected_rows, start_backfill, table_rows


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project directory: its own data/ and dagster_home/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return tmp_path


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rl_pipeline.cli", *args], capture_output=True, text=True, timeout=300, **kwargs
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backfill", "--asset", "nope", "--from", "2024-01-01", "--to", "2024-01-02"], "unknown asset 'nope'"),
        (["backfill", "--asset", "events_link", "--from", "2024-01-05", "--to", "2024-01-02"], "is after --to"),
        (
            ["backfill", "--asset", "events_link", "--from", "2024-1-5", "--to", "2024-01-06"],
            "dates must be YYYY-MM-DD",
        ),
        (["backfill", "--asset", "events_link", "--from", "2023-12-31", "--to", "2024-01-02"], "before the first"),
        (["backfill", "--asset", "events_link", "--from", "2024-01-01", "--to", "2999-01-01"], "after the last"),
        (["backfill", "--asset", "events_link"], "the following arguments are required: --from, --to"),
        (["query"], "the following arguments are required: sql"),
    ],
)
def test_bad_arguments_get_one_clear_line_and_exit_2(args: list[str], message: str, workdir: Path) -> None:
    done = cli(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_backfill_interrupted_by_ctrl_c_then_resumed(make_demo_api, workdir: Path) -> None:
    make_demo_api(rate=20, burst=20)
    days = day_range("2024-01-01", "2024-01-20")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rl_pipeline.cli",
            "backfill",
            "--asset",
            "events_link",
            "--from",
            days[0],
            "--to",
            days[-1],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    instance = dg.DagsterInstance.get()
    while len(instance.get_materialized_partitions(dg.AssetKey("events_link"))) < 2:  # Ctrl-C mid-way
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "stopped: interrupted; run it again to resume" in err

    done_before = instance.get_materialized_partitions(dg.AssetKey("events_link"))
    assert 0 < len(done_before) < len(days)
    runs = instance.get_runs()
    interrupted = [run for run in runs if run.status != dg.DagsterRunStatus.SUCCESS]
    assert interrupted and {run.status for run in interrupted} == {dg.DagsterRunStatus.CANCELED}
    # In the UI, every run of the backfill says which it belongs to.
    assert {run.tags[BACKFILL_TAG].split(", started")[0] for run in runs} == {f"events_link {days[0]}..{days[-1]}"}

    resumed = cli("backfill", "--asset", "events_link", "--from", days[0], "--to", days[-1])
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(days)}/{len(days)}" in resumed.stdout and resumed.stdout.strip().endswith("done")
    warehouse = Warehouse(workdir / "data" / "warehouse.duckdb")
    count, rows = table_rows(warehouse, "events_link")
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected

    status = cli("status", env={**os.environ, "COLUMNS": "200"})
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if "events_link" in line)
    assert f"│ {len(days)}" in line.replace("  ", " ")
    assert "quota demo:" in status.stdout and "resets at" in status.stdout
    assert "pace demo: " in status.stdout and "req/s" in status.stdout
    # One forecast for the API's four assets together (they share its rate and quota), in words.
    assert re.search(
        r"forecast demo \(4 assets together\): \d+ partitions, ~\d+ requests: done by \S+Z "
        r"\(in [\d.]+ (s|min|h|days), limited by the (rate|daily quota)\)",
        status.stdout,
    ), status.stdout
    # The picture of the API: requests/s of its assets together, a bar a minute, against the file's limit.
    picture = re.search(r"requests demo, last 30 min \(a bar a minute, full = 20 req/s, the file's limit\): "
                        r"([ ▁▂▃▄▅▆▇█]{30})  last minute [\d.]+ req/s", status.stdout)  # fmt: skip
    assert picture and picture.group(1).strip(), status.stdout
    # ... and in the UI: points of `apis/demo` (one at each backfill's end), Dagster plots each number.
    points = instance.fetch_observations(dg.AssetKey(["apis", "demo"]), limit=10).records
    assert len(points) >= 2
    last = {name: entry.value for name, entry in points[0].asset_observation.metadata.items()}
    assert last["limit_per_s"] == 20 and 0 < last["requests_per_s"] <= 20 + 20 / 60  # the burst, once a minute
    assert 0 < last["learned_per_s"] <= 20 and last["quota_used_today"] > 0
    rows = backlogs(load_sources(), instance)
    assert last["backlog_days"] == sum(row.missing + row.failed for row in rows) and last["done_in_hours"] > 0
    # From a subdirectory, with no variable saying where: the same project, the same numbers.
    (workdir / "notebooks").mkdir()
    unset = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "RL_DATA_DIR")}
    inside = cli("status", env={**unset, "COLUMNS": "200"}, cwd=workdir / "notebooks")
    timeless = functools.partial(
        re.sub, r"\d{4}-\d\d-\d\dT[\d:]+Z|in [\d.]+ (s|min|h|days)|[\d.]+ req/s|\): [ ▁-█]+  ", "…"
    )
    assert inside.returncode == 0 and timeless(inside.stdout) == timeless(status.stdout), inside.stderr
    assert not (workdir / "notebooks" / "dagster_home").exists() and not (workdir / "notebooks" / "data").exists()

    no_token = {k: v for k, v in os.environ.items() if k != "RL_DEMO_API_TOKEN"}
    status = cli("status", env={**no_token, "COLUMNS": "200"})  # needs no token
    assert status.returncode == 0 and not status.stderr, status.stderr
    assert "set RL_DEMO_API_TOKEN to see them" in status.stdout

    query = cli("query", "SELECT count(*) AS n FROM events_link")
    assert query.returncode == 0 and str(len(expected)) in query.stdout


def test_queries_during_a_backfill_neither_fail_nor_fail_it(make_demo_api, workdir: Path, tmp_path: Path) -> None:
    """Readers take short read-only connections and wait (bounded) while a write holds the file;
    writers wait the same way for readers. Many queries during a backfill: every one answers, the backfill
    completes, the data is exact."""
    make_demo_api(rate=20, burst=20)
    days = day_range("2024-01-01", "2024-03-31")  # ~15 s of requests: room for several queries meanwhile
    warehouse = Warehouse(workdir / "data" / "warehouse.duckdb")
    backfill = start_backfill("events_offset", days[0], days[-1], f"sqlite:///{tmp_path}/s.sqlite", warehouse)
    output: list[str] = []
    drain = threading.Thread(target=lambda: output.extend(backfill.communicate()))  # a full pipe would stall it
    drain.start()
    answers: list[subprocess.CompletedProcess[str]] = []
    while drain.is_alive():
        answer = cli("query", "SELECT count(*) FROM events_offset", "--warehouse", str(warehouse.path))
        if answers or answer.returncode == 0:  # from the moment the table exists
            answers.append(answer)
    drain.join()
    assert backfill.returncode == 0, output[-1][-2000:]
    assert len(answers) >= 3
    assert all(a.returncode == 0 for a in answers), [a.stderr for a in answers if a.returncode]
    count, rows = table_rows(warehouse, "events_offset")
    assert count == len(expected_rows(days)) and rows == expected_rows(days)


def test_a_missing_or_wrong_token_and_an_unreachable_api_each_get_one_line(make_demo_api, workdir: Path) -> None:
    make_demo_api()
    wrong = {**os.environ, "RL_DEMO_API_TOKEN": "not-the-token"}
    done = cli("backfill", "--asset", "events_link", "--from", "2024-01-01", "--to", "2024-01-02", env=wrong)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("rl-pipeline backfill: stopped: ApiError: source demo.events_link, partition 2024-01-0")
    assert "HTTP 401" in line and "not-the-token" not in line and "run it again" not in line, line
    assert "(full log: " in line

    no_token = {k: v for k, v in os.environ.items() if k != "RL_DEMO_API_TOKEN"}
    runs_before = len(dg.DagsterInstance.get().get_runs())
    done = cli("backfill", "--asset", "events_link", "--from", "2024-01-01", "--to", "2024-01-02", env=no_token)
    assert done.returncode == 1 and len(dg.DagsterInstance.get().get_runs()) == runs_before  # checked first
    assert done.stderr.strip().splitlines() == [
        "rl-pipeline backfill: API demo needs its token: set the environment variable RL_DEMO_API_TOKEN"
    ]

    down = {**os.environ, "RL_DEMO_API_URL": "http://127.0.0.1:9", "RL_DEMO_API_TOKEN": "t"}  # nothing listens
    started = time.monotonic()
    done = cli("backfill", "--asset", "events_link", "--from", "2024-01-01", "--to", "2024-01-08", env=down)
    assert done.returncode == 1 and time.monotonic() - started < 30
    [line] = done.stderr.strip().splitlines()
    assert "http://127.0.0.1:9" in line and ("connection refused" in line or "has never answered" in line), line
    assert "; run it again to resume" in line  # once the API is up, a rerun gets past it


def test_what_the_runs_wait_on_shows_on_the_cli_as_it_happens(make_demo_api, workdir: Path) -> None:
    """An outage as the backfill starts: the retries, with their cause, reach the CLI while it runs."""
    server = make_demo_api(rate=20, burst=20)
    process = subprocess.Popen(
        [sys.executable, "-m", "rl_pipeline.cli", "backfill", "--asset", "events_offset", "--from", "2024-01-01",
         "--to", "2024-01-04"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    server.api.config.faults.outage_until = time.time() + 30  # till the first event line is seen
    for line in process.stdout:
        if "HTTP 503 from /v1/offset/events" in line:
            assert "try 2 of" in line or "circuit open" in line, line
            break
    else:
        pytest.fail(f"no event line before the backfill ended: {process.stderr.read()[-2000:]}")
    assert process.poll() is None  # seen while it runs, not in a summary afterwards
    server.api.config.faults.outage_until = 0.0
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.strip().endswith("done")


def test_backfill_runs_ranges_at_once_and_a_failed_one_stops_it_until_rerun(make_demo_api, workdir: Path) -> None:
    from rl_pipeline.demo_api.faults import Faults

    server = make_demo_api(rate=20, burst=20, faults=Faults(missing_id_on=date(2024, 2, 10)))
    days = day_range("2024-01-01", "2024-03-05")  # two runs at once: 33 and 32 days
    failed = cli("backfill", "--asset", "events_offset", "--from", days[0], "--to", days[-1], "--runs", "2")
    assert failed.returncode == 1
    [line] = failed.stderr.strip().splitlines()  # one line: the cause, and where the whole log is
    assert line.startswith("rl-pipeline backfill: stopped: WarehouseError: source demo.events_offset, ")
    assert "partition 2024-02-10" in line and "has no 'id'" in line and "run it again" not in line
    log = Path(line.split("(full log: ")[1].rstrip(")"))
    whole = log.read_text().split(FAILURE)[1]  # the run's log, with the whole error
    assert "Stack Trace:" in whole and "partition 2024-02-10" in whole and "has no 'id'" in whole
    instance = dg.DagsterInstance.get()
    done = instance.get_materialized_partitions(dg.AssetKey("events_offset"))
    assert set(days[:33]) <= done and "2024-02-10" not in done  # the other run finished; its own days before
    assert set(days[33:40]) <= done  # the failed one are done too
    first, second = sorted(instance.get_runs(), key=lambda run: run.tags[RANGE_START])
    assert first.tags[RANGE_START] == days[0] and second.tags[RANGE_START] == days[33]
    a, b = (instance.get_run_record_by_id(run.run_id) for run in (first, second))
    assert a.start_time < b.end_time and b.start_time < a.end_time  # the two ranges ran at once

    requests.post(
        f"{server.url}/_admin/faults", json={"missing_id_on": None}, headers=ADMIN, timeout=5
    ).raise_for_status()
    rerun = cli("backfill", "--asset", "events_offset", "--from", days[0], "--to", days[-1], "--runs", "2")
    assert rerun.returncode == 0, rerun.stderr
    count, rows = table_rows(Warehouse(workdir / "data" / "warehouse.duckdb"), "events_offset")
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected
    assert server.api.stats()["by_status"].get("429", 0) == 0

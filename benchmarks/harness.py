"""What the benchmarks share: the demo API in a process of its own, and what a run left behind."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import requests

from rl_pipeline_tests.support import free_port

TOKEN = "bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}  # the demo API's admin endpoints want its token too


@contextmanager
def demo_api(rate: float, burst: int, daily_quota: int = 10_000_000, *options: str) -> Iterator[str]:
    """Start the demo API on a free port with this limit (more `rl-pipeline demo-api` flags in `options`);
    yields its URL once it answers.

    RL_DEMO_API_URL and RL_DEMO_API_TOKEN are set in this process (and so in its children) meanwhile.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in ("RL_DEMO_API_URL", "RL_DEMO_API_TOKEN")}
    os.environ.update(RL_DEMO_API_URL=url, RL_DEMO_API_TOKEN=TOKEN)
    server = subprocess.Popen(
        [sys.executable, "-m", "rl_pipeline.cli", "demo-api", "--port", str(port), "--rate", str(rate),
         "--burst", str(burst), "--daily-quota", str(daily_quota), *options],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    if os.environ.get("RL_BENCH_NICE"):
        os.setpriority(os.PRIO_PROCESS, server.pid, int(os.environ["RL_BENCH_NICE"]))
    try:
        for _ in range(200):
            try:
                requests.get(f"{url}/_admin/stats", headers=ADMIN, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def server_counts(url: str) -> dict[str, Any]:
    """What the demo API saw since its last reset: requests, 200s, 429s, the span from the first
    request to the last (s), the longest time with no request in it (s), and when the 429s came (s after
    the first request)."""
    stats = requests.get(f"{url}/_admin/stats", headers=ADMIN, timeout=30).json()
    by_status = stats["by_status"]
    times = sorted(t for t, *_ in stats["requests"])
    return {
        "requests": len(times),
        "200": by_status.get("200", 0),
        "429": by_status.get("429", 0),
        "429_at": sorted(t - times[0] for t, status, *_ in stats["requests"] if status == 429),
        "span": times[-1] - times[0] if times else 0.0,
        "longest_gap": max((b - a for a, b in itertools.pairwise(times)), default=0.0),
    }


def refusals(counts: dict[str, Any]) -> str:
    """The 429s, and when the first came: a start-up's differs from a pace's."""
    return f"{counts['429']} (first {counts['429_at'][0]:.1f}s in)" if counts["429_at"] else str(counts["429"])


def table_outcome(database: Path, table: str, days: list[str]) -> dict[str, Any]:
    """Rows of `table`, rows beyond one per id, and whether it is exact: one row for each of the demo API's ids."""
    from rl_pipeline.demo_api import day_records

    expected = {r["id"] for day in days for r in day_records(42, date.fromisoformat(day))}
    with duckdb.connect(str(database), read_only=True) as conn:
        ids = [id_ for (id_,) in conn.execute(f"SELECT id FROM {table}").fetchall()]
    return {
        "rows": len(ids),
        "duplicates": len(ids) - len(set(ids)),
        "exact": len(ids) == len(expected) and set(ids) == expected,
    }


def days_from(first: date, count: int) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range(count)]


def rl_pipeline_backfill(
    days: list[str], database: Path, store: str, workers: int = 4, max_workers: int | None = None
) -> float:
    """Materialize `events_offset` for `days` through Dagster, in ranged runs as the backfill policy cuts them,
    `workers` days at once, widening to `max_workers` (the resource's default if None); returns the wall
    seconds."""
    import dagster as dg

    from rl_pipeline.defs.partitions import MAX_PARTITIONS_PER_RUN
    from rl_pipeline.warehouse import Warehouse
    from rl_pipeline_tests.support import materialize_range

    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        for i in range(0, len(days), MAX_PARTITIONS_PER_RUN):
            chunk = days[i : i + MAX_PARTITIONS_PER_RUN]
            result = materialize_range(
                ["events_offset"], chunk[0], chunk[-1], Warehouse(database), store, instance, workers=workers,
                **({} if max_workers is None else {"max_workers": max_workers}),
            )  # fmt: skip
            assert result.success, result.failure_data_for_node("events_offset")
    return time.perf_counter() - started


def cli_backfill(days: list[str], runs: int, tmp: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`rl-pipeline backfill` of `events_offset` for `days`, RUNS at once, on a fresh instance and data
    directory under `tmp` (plus `env`); returns the wall seconds, the exit code and whether the table is exact."""
    home, data = Path(tempfile.mkdtemp(dir=tmp, prefix="home-")), Path(tempfile.mkdtemp(dir=tmp, prefix="data-"))
    env = {**os.environ, "DAGSTER_HOME": str(home), "RL_DATA_DIR": str(data), **(env or {})}
    for moved in ("RL_WAREHOUSE", "RL_STATE_STORE"):  # both under RL_DATA_DIR
        env.pop(moved, None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rl_pipeline.cli", "backfill", "--asset", "events_offset", "--from", days[0],
         "--to", days[-1], "--runs", str(runs)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    warehouse = data / "warehouse.duckdb"
    exact = warehouse.exists() and table_outcome(warehouse, "events_offset", days)["exact"]
    return {"wall": wall, "returncode": done.returncode, "exact": exact, "stderr": done.stderr[-2000:]}


def dlt_load(url: str, days: list[str], workdir: Path) -> tuple[Path, str]:
    """dlt's `rest_api` source loading `events_offset` for `days` (offset paginator, a parent resource of days,
    merge on id; dlt's own retries, no client-side limit) into DuckDB; returns (database, table)."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    @dlt.resource(selected=False)
    def day_list():
        yield [{"day": day} for day in days]

    source = rest_api_source(
        {
            "client": {"base_url": url, "auth": {"type": "bearer", "token": TOKEN}},
            "resources": [
                day_list,
                {
                    "name": "events",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "/v1/offset/events",
                        "params": {"date": "{resources.day_list.day}"},
                        "data_selector": "data",
                        "paginator": {"type": "offset", "limit": 100, "total_path": "total"},
                    },
                },
            ],
        }
    )
    database = workdir / "dlt.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name=f"peers_{workdir.name}_{len(days)}",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="peers",
        pipelines_dir=str(workdir / "dlt_pipelines"),
    )
    pipeline.run(source)
    return database, "peers.events"

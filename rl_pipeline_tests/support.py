"""Helpers for the tests and benchmarks: the demo dataset, warehouse rows, ranged runs, `dagster dev`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import requests

from rl_pipeline.demo_api import day_records
from rl_pipeline.demo_api.faults import Faults
from rl_pipeline.warehouse import Warehouse

TOKEN = "test-token-5f3a9c"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}  # the demo API's admin endpoints want its token too

# 2024-01-04 has 1,344 records, 2024-01-09 none (seed 42).
DAYS = ["2024-01-03", "2024-01-04", "2024-01-09"]


def expected_rows(days: list[str], seed: int = 42, faults: Faults | None = None) -> dict[str, dict[str, Any]]:
    """The demo API's own dataset for `days`, keyed by id, nested values as parsed JSON."""
    return {r["id"]: r for day in days for r in day_records(seed, date.fromisoformat(day), faults)}


def day_range(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def table_rows(warehouse: Warehouse, table: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """(row count, rows keyed by id) of a warehouse table, bookkeeping columns dropped."""
    with warehouse.connect(read_only=True) as conn:
        cursor = conn.execute(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    out = {}
    for row in rows:
        # created_at is a TIMESTAMPTZ: back to the API's text (2024-01-04T00:00:00.104Z) to compare with it.
        row["created_at"] = row["created_at"].astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert row.pop("_partition").isoformat() == row["created_at"][:10]
        row.pop("_fetched_at")
        for name in ("customer", "tags"):
            row[name] = json.loads(row[name])
        if "channel" in row and row["channel"] is None:
            del row["channel"]  # schema drift: rows from before the field existed
        out[row["id"]] = row
    return len(rows), out


def write_sources(path: Path, **demo: Any) -> Path:
    """The shipped sources file with the demo API's fields replaced by `demo`, written to `path`."""
    import yaml

    from rl_pipeline.sources import SHIPPED_SOURCES

    sources = yaml.safe_load(SHIPPED_SOURCES.read_text())
    sources["apis"]["demo"].update(demo)
    path.write_text(yaml.safe_dump(sources))
    return path


def required(name: str) -> bool:
    return os.environ.get(f"RL_REQUIRE_{name}") == "1"


def answer_once(connection: socket.socket, body: bytes) -> None:
    """Read one request on a raw `connection`, answer it 200 with `body`, and close it."""
    with connection:
        connection.settimeout(5)
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_dagster_dev(env: dict[str, str], cwd: Path, log_path: Path, timeout: float = 180) -> Iterator[str]:
    """`dagster dev` for the code location on a free port, output to `log_path`; yields its URL once it
    answers, and stops it (Ctrl-C, then kill) after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-m", "rl_pipeline.definitions", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "dagster dev did not come up"
                try:
                    if requests.get(f"{url}/server_info", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.5)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def demo_asset(endpoint: str):
    from rl_pipeline.defs.assets import endpoint_asset
    from rl_pipeline.sources import load_sources

    return endpoint_asset("demo", endpoint, load_sources().apis["demo"])


def materialize_range(
    endpoints: list[str],
    first: str,
    last: str,
    warehouse: Warehouse,
    store_url: str,
    instance=None,
    batch_rows: int | None = None,
    **api_config: Any,
):
    """Materialize `endpoints` for the days first..last in one ranged run, as a backfill would."""
    import dagster as dg

    from rl_pipeline.defs.resources import DuckDBWarehouse, RateLimitedApi

    warehouse_config = {"batch_rows": batch_rows} if batch_rows else {}
    return dg.materialize(
        [demo_asset(name) for name in endpoints],
        instance=instance,
        resources={
            "demo_api": RateLimitedApi(
                api="demo", token=dg.EnvVar("RL_DEMO_API_TOKEN"), state_store=store_url, **api_config
            ),
            "warehouse": DuckDBWarehouse(path=str(warehouse.path), **warehouse_config),
        },
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


def start_backfill(
    endpoint: str,
    first: str,
    last: str,
    store_url: str,
    warehouse: Warehouse,
    batch_rows: int | None = None,
    missing_only: bool = False,
    **api_config: Any,
) -> subprocess.Popen[str]:
    """A backfill run in a process of its own (see backfill_worker)."""
    command = [
        sys.executable, "-m", "rl_pipeline_tests.backfill_worker", "--asset", endpoint,
        "--first", first, "--last", last, "--store", store_url, "--warehouse", str(warehouse.path),
        "--api-config", json.dumps(api_config),
    ]  # fmt: skip
    if batch_rows:
        command += ["--batch-rows", str(batch_rows)]
    if missing_only:
        command.append("--missing-only")
    return subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

"""Scale-out as deployed: a Dagster instance on PostgreSQL, the rate budget in Redis, several Dagster processes.

Two `rl-pipeline backfill` processes (each launching its runs as processes of
their own, as run workers do) share one Postgres-backed instance
(deploy/dagster.yaml, used as shipped) and one Redis state store. Together
they must hold the API's one limit, counted by the server, and leave the exact
dataset and one materialization per day in the shared instance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pytest

from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import day_range, expected_rows, required, table_rows

RATE, BURST = 20, 20  # the shipped sources file's published limit
DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL at $RL_POSTGRES_URL (default: the local one), dropped after; its URL.

    Skipped when that server cannot be reached, unless RL_REQUIRE_POSTGRES=1.
    """
    import psycopg2

    server = os.environ.get("RL_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        admin = psycopg2.connect(server, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        if required("POSTGRES"):
            pytest.fail(f"RL_REQUIRE_POSTGRES=1 but no PostgreSQL at {server}: {exc}")
        pytest.skip(f"no PostgreSQL at {server}")
    admin.autocommit = True
    name = f"rl_pipeline_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    # As Dagster's SQLAlchemy URL: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, not the installed psycopg2.
    yield urlunsplit(urlsplit(server)._replace(scheme="postgresql+psycopg2", path=f"/{name}"))
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_two_dagster_processes_on_postgres_and_redis_hold_one_limit(
    make_demo_api, postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    server = make_demo_api(rate=RATE, burst=BURST, limit_headers=False)  # nothing to learn: the shared budget holds
    redis.Redis.from_url(redis_url).flushdb()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY, home / "dagster.yaml")
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RL_DAGSTER_PG_URL", postgres_url)
    monkeypatch.setenv("RL_STATE_STORE", redis_url)
    monkeypatch.setenv("RL_WAREHOUSE", str(warehouse.path))
    halves = [("2024-01-01", "2024-02-09"), ("2024-02-10", "2024-03-20")]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "rl_pipeline.cli", "backfill", "--asset", "events_offset", "--from", a, "--to", b],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a, b in halves
    ]
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, (out + err)[-3000:]

    stats = server.api.stats()
    assert stats["by_status"] == {"200": len(stats["requests"])}  # not one 429
    assert len(stats["requests"]) > 6 * BURST  # well past the burst, into the steady rate
    assert stats["most_in_any_second"] <= RATE + BURST
    days = day_range(halves[0][0], halves[1][1])
    count, rows = table_rows(warehouse, "events_offset")
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_materialized_partitions(dg.AssetKey("events_offset")) == set(days)
        runs = instance.get_runs()
        assert len(runs) == 8 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)  # 2 halves of 4 runs

"""A backfill at the API's limit: wall time against the ideal, same run, several settings.

    .venv/bin/python benchmarks/backfill_bench.py [--days 31 365] [--rate 20] [--workers 1 4]

The demo API runs in its own process with a limit of RATE req/s (burst RATE).
Each variant materializes `events_offset` for DAYS days through Dagster, in
ranged runs of 30 days as `BackfillPolicy.multi_run(30)` makes them, into a
fresh DuckDB file. Ideal = requests / RATE. Printed: wall / ideal, 429s
(server side), and whether the table equals the demo API's dataset.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import requests
from demo_server import demo_api
from rich.console import Console
from rich.table import Table


def run(days: int, workers: int, url: str, tmp: Path) -> dict:
    import dagster as dg

    from rl_pipeline.defs.assets import MAX_PARTITIONS_PER_RUN
    from rl_pipeline.demo_api import day_records
    from rl_pipeline.warehouse import Warehouse
    from rl_pipeline_tests.conftest import backfill

    requests.post(f"{url}/_admin/reset", timeout=5)
    first = date(2024, 1, 1)
    keys = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    warehouse = Warehouse(tmp / f"w{days}-{workers}.duckdb")
    store = f"sqlite:///{tmp}/s{days}-{workers}.sqlite"
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        for i in range(0, days, MAX_PARTITIONS_PER_RUN):
            chunk = keys[i : i + MAX_PARTITIONS_PER_RUN]
            result = backfill(["events_offset"], chunk[0], chunk[-1], warehouse, store, instance, workers=workers)
            assert result.success
    wall = time.perf_counter() - started
    stats = requests.get(f"{url}/_admin/stats", timeout=30).json()
    expected = {r["id"] for key in keys for r in day_records(42, date.fromisoformat(key))}
    with warehouse.connect(read_only=True) as conn:
        got = {row[0] for row in conn.execute("SELECT id FROM events_offset").fetchall()}
        count = conn.execute("SELECT count(*) FROM events_offset").fetchone()[0]
    served = len(stats["requests"])
    return {
        "served": served,
        "wall": wall,
        "429": stats["by_status"].get("429", 0),
        "exact": got == expected and count == len(expected),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, nargs="+", default=[31, 365])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    table = Table(
        "days", "workers", "requests", "ideal s", "wall s", "wall / ideal", "429s", "dataset exact",
        title=f"Backfill of events_offset at {args.rate:g} req/s (demo API in its own process), {os.cpu_count()} cores",
    )  # fmt: skip
    with demo_api(args.rate, int(args.rate)) as url, tempfile.TemporaryDirectory() as tmp:
        run(1, 1, url, Path(tmp))  # warm-up, not reported: the first run in a process pays Dagster's imports
        for days in args.days:
            for workers in args.workers:
                r = run(days, workers, url, Path(tmp))
                ideal = r["served"] / args.rate
                table.add_row(
                    str(days), str(workers), str(r["served"]), f"{ideal:.1f}", f"{r['wall']:.1f}",
                    f"{r['wall'] / ideal:.3f}", str(r["429"]), "yes" if r["exact"] else "NO",
                )  # fmt: skip
    Console(width=160).print(table)
    print("goal: wall / ideal <= 1.15 for 365 days, 0 429s, the dataset exact")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()

"""A day's write as the table grows: what a long backfill's writer pays per day, year after year.

    .venv/bin/python benchmarks/growth_bench.py [--years 10]

Each day of the demo API's dataset is upserted on its own, as a backfill
writes it (a connection opened and closed per day, the writer's memory
limit and threads, the partition noted), into one table that grows to
~1M rows in 10 years. Printed per year: ms per day-write, and its ratio to
the first year's (the baseline, same run). Twice: with the ids as the demo
API serves them (`evt_20240101_00001`: they grow over time, as many APIs'
do), and with the same ids hashed (random order, as UUIDs are).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rl_pipeline.demo_api.data import day_records
from rl_pipeline.warehouse import PartitionReport, Warehouse


def hashed(records: list[dict]) -> list[dict]:
    return [{**r, "id": hashlib.sha1(r["id"].encode()).hexdigest()} for r in records]


def per_year(years: int, random_ids: bool, workdir: Path) -> list[tuple[int, float]]:
    """(rows at the year's end, ms per day-write during the year) for each year."""
    warehouse = Warehouse(workdir / f"growth-{random_ids}.duckdb")
    first, out = date(2014, 1, 1), []
    for year in range(years):
        spent = 0.0
        for i in range(365):
            day = first + timedelta(days=year * 365 + i)
            records = day_records(42, day)
            records = hashed(records) if random_ids else records
            started = time.perf_counter()
            warehouse.upsert(
                "events", records, partition=day.isoformat(), fetched_at=datetime.now(UTC),
                finished=PartitionReport(len(records), len(records)), track_changes=True,
            )  # fmt: skip
            spent += time.perf_counter() - started
        out.append((warehouse.count("events"), spent / 365 * 1000))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, default=10)
    args = parser.parse_args()
    table = Table("ids", "year", "rows after", "ms per day-write", "vs the first year", title=__doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as tmp:
        for random_ids in (False, True):
            years = per_year(args.years, random_ids, Path(tmp))
            for year, (rows, ms) in enumerate(years, start=1):
                label = "hashed (random order)" if random_ids else "as served (growing)"
                table.add_row(label, str(year), f"{rows:,}", f"{ms:.1f}", f"{ms / years[0][1]:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

"""DuckDB writer throughput: rl_pipeline's upsert against a plain Arrow INSERT, same data, same run.

    .venv/bin/python benchmarks/writer_bench.py [--rows 100000 1000000] [--batch 5000]

For each size: a plain INSERT of Arrow batches into an unkeyed table (the
baseline: no key, no dedupe, no schema checks), then `Warehouse.upsert` of the
same batches into an empty table (first load) and again (a full re-upsert:
every row replaced). Input is the demo API's records as the client gets them
(dicts with nested objects), converted in both cases.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from rl_pipeline.demo_api.data import day_records
from rl_pipeline.ingest import DEFAULT_BATCH_ROWS
from rl_pipeline.warehouse import DEFAULT_MEMORY_LIMIT, DEFAULT_THREADS, Warehouse, to_arrow


def records(n: int) -> list[dict]:
    out: list[dict] = []
    day = date(2020, 1, 1)
    while len(out) < n:
        out += day_records(7, day)
        day += timedelta(days=1)
    return out[:n]


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def plain_insert(path: Path, parts: list[list[dict]]) -> float:
    started = time.perf_counter()
    conn = duckdb.connect(str(path))
    for part in parts:
        batch = to_arrow(part, "id", "bench")
        conn.register("batch", batch)
        if part is parts[0]:
            conn.execute("CREATE TABLE plain AS SELECT * FROM batch LIMIT 0")
        conn.execute("INSERT INTO plain SELECT * FROM batch")
    conn.close()
    return time.perf_counter() - started


def upsert(warehouse: Warehouse, parts: list[list[dict]]) -> float:
    started = time.perf_counter()
    now = datetime.now(UTC)
    for part in parts:
        warehouse.upsert("events", part, partition="2020-01-01", fetched_at=now)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_ROWS)
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, help="of the upsert's DuckDB connection")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="of the upsert's DuckDB connection")
    args = parser.parse_args()
    table = Table(
        "rows", "batch", "plain insert rows/s", "upsert first load rows/s", "ratio", "re-upsert rows/s", "ratio",
        title=f"DuckDB {duckdb.__version__}, pyarrow {pa.__version__}; upsert memory_limit {args.memory_limit}, "
        f"threads {args.threads}",
    )  # fmt: skip
    for n in args.rows:
        rows = records(n)
        parts = batches(rows, args.batch)
        with tempfile.TemporaryDirectory() as tmp:
            base = n / plain_insert(Path(tmp) / "plain.duckdb", parts)
            warehouse = Warehouse(Path(tmp) / "w.duckdb", memory_limit=args.memory_limit, threads=args.threads)
            first = n / upsert(warehouse, parts)
            again = n / upsert(warehouse, parts)
            assert warehouse.count("events") == len({r["id"] for r in rows})
        table.add_row(
            f"{n:,}", f"{args.batch:,}", f"{base:,.0f}", f"{first:,.0f}", f"{first / base:.2f}", f"{again:,.0f}",
            f"{again / base:.2f}",
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

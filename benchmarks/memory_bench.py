"""Peak memory of one huge day streaming through the client into DuckDB.

    .venv/bin/python benchmarks/memory_bench.py [--records 500000] [--batch-rows N] [--memory-limit 32MB] [--threads 1]

The demo API (its own process, a limit far above what one client sends)
serves one day of RECORDS records (`Faults.huge_day`), 100 a page. A child
process runs `ingest_day` on it into a fresh DuckDB file and reports its peak
RSS; a second child, in the same run, only imports and builds the same
client, for the baseline every Python process with these libraries pays.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import requests
from harness import ADMIN, TOKEN, demo_api

from rl_pipeline.ingest import DEFAULT_BATCH_ROWS
from rl_pipeline.warehouse import DEFAULT_MEMORY_LIMIT, DEFAULT_THREADS

DAY = date(2024, 3, 1)


def child(workdir: str, ingest: bool, batch_rows: int, memory_limit: str, threads: int) -> None:
    from rl_pipeline.client import ApiClient
    from rl_pipeline.ingest import ingest_day
    from rl_pipeline.sources import RateLimitSpec, load_sources
    from rl_pipeline.state import open_store
    from rl_pipeline.warehouse import Warehouse

    spec = load_sources().apis["demo"]
    spec = spec.model_copy(update={"rate_limits": [RateLimitSpec(rate=100_000, burst=1000)], "quota": None})
    client = ApiClient("demo", spec, token=TOKEN, store=open_store("memory://"))
    started, records = time.perf_counter(), 0
    if ingest:
        warehouse = Warehouse(Path(workdir) / "w.duckdb", memory_limit=memory_limit, threads=threads)
        records = ingest_day(client, warehouse, "events_offset", DAY, batch_rows=batch_rows).records
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": records, "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, help="of the writer's DuckDB connection")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="of the writer's DuckDB connection")
    parser.add_argument("--child", choices=["ingest", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.workdir, args.child == "ingest", args.batch_rows, args.memory_limit, args.threads)
        return
    results = {}
    with demo_api(100_000, 1000) as url, tempfile.TemporaryDirectory() as workdir:
        requests.post(
            f"{url}/_admin/faults",
            json={"huge_day": DAY.isoformat(), "huge_day_records": args.records},
            headers=ADMIN,
            timeout=5,
        ).raise_for_status()
        for kind in ("baseline", "ingest"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--workdir", workdir,
                 "--batch-rows", str(args.batch_rows), "--memory-limit", args.memory_limit,
                 "--threads", str(args.threads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    ingest, baseline = results["ingest"], results["baseline"]
    print(
        f"one day of {ingest['records']:,} records, 100 a page, into DuckDB, batch_rows {args.batch_rows:,}, "
        f"writer memory_limit {args.memory_limit}, threads {args.threads}:"
    )
    print(f"  peak RSS {ingest['peak_mb']:.0f} MB (goal <= 300); baseline process {baseline['peak_mb']:.0f} MB")
    print(f"  {ingest['records'] / ingest['seconds']:,.0f} records/s over {ingest['seconds']:.1f} s")


if __name__ == "__main__":
    main()

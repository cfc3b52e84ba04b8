"""A backfill at the API's limit: wall time against the ideal, same run, several settings.

    .venv/bin/python benchmarks/backfill_bench.py [--days 31 365] [--rate 20] [--workers 1 4] [--runs 1 2 4]
        [--no-burst]

The demo API runs in its own process with a limit of RATE req/s (burst RATE).
Each variant materializes `events_offset` for DAYS days through Dagster, in
ranged runs of 92 days as `BackfillPolicy.multi_run(92)` makes them, into a
fresh DuckDB file. Ideal = requests / RATE. Printed: wall / ideal, span / ideal (from the
server's first request to its last), the longest time with no request,
429s (server side), and whether the table equals the demo API's dataset.
With --no-burst the server is a leaky bucket with burst 1, which lets no
idle second be made up afterwards.

First in one process, one run after another (WORKERS day-workers a run):
the cost of fetching and writing. Then as deployed: `rl-pipeline backfill`
on a fresh instance, every run a process of its own as Dagster's run
launcher makes it, RUNS of them at once: the cost of runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

import requests
from harness import (
    ADMIN,
    cli_backfill,
    days_from,
    demo_api,
    refusals,
    rl_pipeline_backfill,
    server_counts,
    table_outcome,
)
from rich.console import Console
from rich.table import Table

from rl_pipeline_tests.support import write_sources


def run(days: int, workers: int, url: str, tmp: Path) -> dict:
    requests.post(f"{url}/_admin/reset", headers=ADMIN, timeout=5)
    keys = days_from(date(2024, 1, 1), days)
    database = tmp / f"w{days}-{workers}.duckdb"
    wall = rl_pipeline_backfill(keys, database, f"sqlite:///{tmp}/s{days}-{workers}.sqlite", workers)
    return {**server_counts(url), "wall": wall, "exact": table_outcome(database, "events_offset", keys)["exact"]}


def cli_run(days: int, runs: int, url: str, tmp: Path) -> dict:
    """From 2024-01-01, or from as far back as DAYS complete days need (10 years: from 2016; the demo API
    serves any day, the sources file then starts there)."""
    requests.post(f"{url}/_admin/reset", headers=ADMIN, timeout=5)
    first = min(date(2024, 1, 1), date.today() - timedelta(days=days))
    env = {}
    if first < date(2024, 1, 1):
        sources = write_sources(Path(tempfile.mkdtemp(dir=tmp)) / "sources.yaml", start_date=first.isoformat())
        env["RL_SOURCES_FILE"] = str(sources)
    result = cli_backfill(days_from(first, days), runs, tmp, env)
    assert result["returncode"] == 0, result["stderr"]
    return {**server_counts(url), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, nargs="+", default=[31, 365])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 4], help="none: the CLI runs alone")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 2, 4], help="rl-pipeline backfill --runs")
    parser.add_argument(
        "--no-burst", action="store_true", help="the server is a leaky bucket with burst 1 (nginx limit_req, no burst)"
    )
    args = parser.parse_args()
    server = ["--algorithm", "leaky_bucket"] if args.no_burst else []
    burst = 1 if args.no_burst else int(args.rate)
    title = f"Backfill of events_offset at {args.rate:g} req/s (demo API in its own process), {os.cpu_count()} cores"
    title += f", server burst {1 if args.no_burst else int(args.rate)}"
    columns = ["requests", "ideal s", "wall s", "wall / ideal", "span / ideal", "longest gap s", "429s", "exact"]
    table = Table("days", "workers a run", *columns, title=f"{title}: runs one after another in one process")
    cli = Table("days", "runs at once", *columns, title=f"{title}: rl-pipeline backfill, a process a run")

    def row(r: dict) -> list[str]:
        ideal = r["requests"] / args.rate
        return [str(r["requests"]), f"{ideal:.1f}", f"{r['wall']:.1f}", f"{r['wall'] / ideal:.3f}",
                f"{r['span'] / ideal:.3f}", f"{r['longest_gap']:.2f}", refusals(r),
                "yes" if r["exact"] else "NO"]  # fmt: skip

    with demo_api(args.rate, burst, 10_000_000, *server) as url, tempfile.TemporaryDirectory() as tmp:
        run(1, 1, url, Path(tmp))  # warm-up, not reported: the first run in a process pays Dagster's imports
        for days in args.days:
            for workers in args.workers:
                table.add_row(str(days), str(workers), *row(run(days, workers, url, Path(tmp))))
        for runs in args.runs:
            cli.add_row(str(max(args.days)), str(runs), *row(cli_run(max(args.days), runs, url, Path(tmp))))
    Console(width=160).print(table)
    Console(width=160).print(cli)
    print(
        "goals: 365 days through the CLI with 4 runs at once: span / ideal <= 1.05, no gap of a second; 0 429s, exact"
    )


if __name__ == "__main__":
    main()

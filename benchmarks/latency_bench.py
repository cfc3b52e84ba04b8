"""A server that answers slowly: days at once held to `workers` against widening up to `max_workers`.

    .venv/bin/python benchmarks/latency_bench.py [--days 90] [--latency 0 0.3 1.0] [--workers 4] [--most 16]

The demo API runs in its own process at 20 requests/s with no burst, and
answers every request after LATENCY seconds. For each latency, one ranged
run (in this process, through Dagster) materializes `events_offset` for DAYS
days twice, on a fresh warehouse and state store: held to WORKERS days at
once (the baseline: what a run did before it could widen), then free to
widen up to MOST while the rate budget has room. Ideal = pages / 20;
"span" runs from the server's first request to its last. A run at 20 req/s
needs about 20 x LATENCY requests in flight.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import date
from pathlib import Path

import requests
from harness import ADMIN, days_from, demo_api, rl_pipeline_backfill, server_counts, table_outcome
from rich.console import Console
from rich.table import Table

RATE = 20


def cell(url: str, days: list[str], latency: float, workers: int, most: int, tmp: Path) -> dict[str, float]:
    requests.post(f"{url}/_admin/reset", headers=ADMIN, timeout=5)
    faults = {"slow_rate": 1.0 if latency else 0.0, "slow_seconds": latency}
    requests.post(f"{url}/_admin/faults", headers=ADMIN, json=faults, timeout=5).raise_for_status()
    work = Path(tempfile.mkdtemp(dir=tmp))
    wall = rl_pipeline_backfill(days, work / "w.duckdb", f"sqlite:///{work}/s.sqlite", workers, most)
    counts = server_counts(url)
    exact = table_outcome(work / "w.duckdb", "events_offset", days)["exact"]
    return {**counts, "wall": wall, "ideal": counts["200"] / RATE, "exact": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--most", type=int, default=16)
    args = parser.parse_args()
    days = days_from(date(2024, 1, 1), args.days)
    table = Table(
        "latency s", "days at once", "requests", "429s", "ideal s", "span s", "span / ideal", "wall s", "exact",
        "baseline wall / this wall",
        title=f"events_offset, {args.days} days, one run, {RATE} req/s with no burst, {os.cpu_count()} cores",
    )  # fmt: skip
    with demo_api(RATE, 1, 10_000_000, "--algorithm", "leaky_bucket") as url, tempfile.TemporaryDirectory() as tmp:
        for latency in args.latency:
            held = cell(url, days, latency, args.workers, args.workers, Path(tmp))
            widened = cell(url, days, latency, args.workers, args.most, Path(tmp))
            for label, r in ((f"{args.workers}", held), (f"{args.workers} up to {args.most}", widened)):
                table.add_row(
                    f"{latency:g}", label, str(r["requests"]), str(r["429"]), f"{r['ideal']:.1f}", f"{r['span']:.1f}",
                    f"{r['span'] / r['ideal']:.3f}", f"{r['wall']:.1f}", "yes" if r["exact"] else "NO",
                    f"{held['wall'] / r['wall']:.2f}",
                )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

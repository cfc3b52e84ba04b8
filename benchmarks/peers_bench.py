"""Three designs on the same work, same API, same run: rl_pipeline, a dlt `rest_api` pipeline, the textbook loop.

    .venv/bin/python benchmarks/peers_bench.py [--days 90] [--rate 20]

The demo API runs in its own process with a limit of RATE req/s (burst
RATE). Each design loads `events_offset` (offset pagination, 100 a page) for
DAYS days into a fresh DuckDB file, upserting on `id`:

- rl_pipeline: the Dagster asset, ranged runs of 92 days, 4 workers under the
  shared limiter (as `rl-pipeline backfill` and the UI run it);
- dlt: `rest_api_source` with the offset paginator and a parent resource of
  days, `write_disposition="merge"` on `id` into dlt's DuckDB destination (dlt
  retries 429s, honouring Retry-After; it has no client-side rate limit);
- textbook: one process, a private token bucket at the published limit, one
  `INSERT OR REPLACE` per record into a keyed table.

Each design first loads one day untimed (imports and set-up are not what is
compared), then the server's counts are reset and the timed load begins.
Ideal = pages served (200s) / RATE.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from datetime import date
from importlib.metadata import version
from pathlib import Path

import duckdb
import requests
from harness import ADMIN, TOKEN, days_from, demo_api, dlt_load, rl_pipeline_backfill, server_counts, table_outcome
from rich.console import Console
from rich.table import Table

PATH = "/v1/offset/events"
COLUMNS = ["id", "created_at", "amount", "quantity", "is_refund", "status", "customer", "tags", "note"]


def rl_pipeline(url: str, days: list[str], workdir: Path) -> tuple[Path, str]:
    database = workdir / "rl_pipeline.duckdb"
    rl_pipeline_backfill(days, database, f"sqlite:///{workdir}/state.sqlite")
    return database, "events_offset"


class PrivateBucket:
    """The textbook token bucket: RATE tokens a second, BURST at most, known to this process alone."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()

    def take(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            time.sleep((1 - self.tokens) / self.rate)
            self.stamp, self.tokens = time.monotonic(), 1.0
        self.tokens -= 1


def textbook(url: str, days: list[str], workdir: Path, rate: float) -> tuple[Path, str]:
    database = workdir / "textbook.duckdb"
    bucket = PrivateBucket(rate, rate)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    with duckdb.connect(str(database)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id VARCHAR PRIMARY KEY, created_at VARCHAR, amount DOUBLE, "
            "quantity BIGINT, is_refund BOOLEAN, status VARCHAR, customer JSON, tags JSON, note VARCHAR)"
        )
        insert = f"INSERT OR REPLACE INTO events VALUES ({', '.join('?' * len(COLUMNS))})"
        for day in days:
            offset, total = 0, 1
            while offset < total:
                bucket.take()
                response = session.get(f"{url}{PATH}", params={"date": day, "offset": offset, "limit": 100})
                if response.status_code == 429:
                    time.sleep(float(response.headers.get("Retry-After", 1)))
                    continue
                response.raise_for_status()
                body = response.json()
                for record in body["data"]:
                    conn.execute(
                        insert, [json.dumps(record[c]) if c in ("customer", "tags") else record[c] for c in COLUMNS]
                    )
                offset, total = offset + 100, body["total"]
    return database, "events"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    designs: dict[str, Callable[[str, list[str], Path], tuple[Path, str]]] = {
        "rl_pipeline (4 workers, shared limiter, Arrow upsert)": rl_pipeline,
        f"dlt {version('dlt')} rest_api (merge on id)": dlt_load,
        "textbook (private bucket, row-by-row insert)": lambda url, days, tmp: textbook(url, days, tmp, args.rate),
    }
    table = Table(
        "design", "requests", "pages", "ideal s", "wall s", "wall / ideal", "429s", "rows", "duplicates", "exact",
        "rows/s", title=f"events_offset, {args.days} days at {args.rate:g} req/s (burst {args.rate:g}), demo API apart",
    )  # fmt: skip
    days = days_from(date(2024, 1, 2), args.days)
    with demo_api(args.rate, int(args.rate)) as url:
        for name, design in designs.items():
            with tempfile.TemporaryDirectory() as warm, tempfile.TemporaryDirectory() as tmp:
                design(url, ["2024-01-01"], Path(warm))
                requests.post(f"{url}/_admin/reset", headers=ADMIN, timeout=5)
                started = time.perf_counter()
                database, name_in_db = design(url, days, Path(tmp))
                wall = time.perf_counter() - started
                counts, outcome = server_counts(url), table_outcome(database, name_in_db, days)
            ideal = counts["200"] / args.rate  # pages served; a 429 is not work done
            table.add_row(
                name, str(counts["requests"]), str(counts["200"]), f"{ideal:.1f}", f"{wall:.1f}", f"{wall / ideal:.2f}",
                str(counts["429"]), f"{outcome['rows']:,}", str(outcome["duplicates"]),
                "yes" if outcome["exact"] else "NO", f"{outcome['rows'] / wall:,.0f}",
            )  # fmt: skip
    Console(width=180).print(table)


if __name__ == "__main__":
    main()

"""The server is the truth: five server-side limits x four sources files, and dlt's REST client on the same servers.

    .venv/bin/python benchmarks/server_truth_bench.py [--days 365] [--runs 4] [--servers ...] [--files ...]
        [--latency S] [--limit-headers]

The demo API runs in its own process, enforcing 20 requests/s (or 200 per
10 s) with one of the algorithms real servers use, and sends no
`X-RateLimit-*` headers (nothing to learn but the 429s; with --limit-headers
it sends them, as an API that publishes its budget does):

- token_bucket: burst 20, 429 with Retry-After;
- leaky_bucket: burst 1 (nginx `limit_req` with no burst), 429 with Retry-After: 1;
- fixed_window: 200 per aligned 10 s, 429 with Retry-After;
- sliding_window_log, sliding_window_counter: 200 per 10 s, refused requests
  counted too, 429 with no Retry-After;
- minute_window (only when named in --servers): a sliding log of 120 per 60 s
  (2 a second), refused requests counted, no Retry-After: "120 a minute".

Each sources file describes it as a hurried user would: `exact` (algorithm,
period, burst), `rate` (only the rate and period), `too_high` (the rate
1.5x what the server allows), `adaptive` (no limit, `adaptive:
{initial_rate: 5}`); and, when named in --files, `per_second` (the limit's count
with its period left out, so read per second: 10x too high for a 10 s window,
60x for a minute). Each cell is `rl-pipeline backfill` of `events_offset`
for DAYS days, RUNS runs at once, on a fresh instance and state store.

With --latency S the server takes S seconds over every answer but a 429
(a rate limit refuses at once, before the work), as a real one across a
network does: requests in flight when a 429 comes keep succeeding into the
pause. Ideal = pages served (200s) / the server's real limit (20 per second, 2 for minute_window).
"span / ideal" runs from the server's first request to its last.
Goal for every cell: exact dataset, <= 0.5% of requests answered 429, span <= 1.10 of ideal, no failed day.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import requests
import yaml
from harness import ADMIN, cli_backfill, days_from, demo_api, dlt_load, server_counts, table_outcome
from rich.console import Console
from rich.table import Table

from rl_pipeline.sources import SHIPPED_SOURCES

SERVERS: dict[str, dict[str, Any]] = {
    "token_bucket": {"rate": 20, "period": 1, "burst": 20, "flags": []},
    "leaky_bucket": {"rate": 20, "period": 1, "burst": 1, "flags": []},
    "fixed_window": {"rate": 200, "period": 10, "burst": 1, "flags": []},
    "sliding_window_log": {"rate": 200, "period": 10, "burst": 1, "flags": ["--count-refused", "--no-retry-after"]},
    "sliding_window_counter": {
        "rate": 200, "period": 10, "burst": 1, "flags": ["--count-refused", "--no-retry-after"],
    },
    "minute_window": {
        "rate": 120, "period": 60, "burst": 1, "algorithm": "sliding_window_log",
        "flags": ["--count-refused", "--no-retry-after"],
    },
}  # fmt: skip
MATRIX = ("token_bucket", "leaky_bucket", "fixed_window", "sliding_window_log", "sliding_window_counter")
MATRIX_FILES = ("exact", "rate", "too_high", "adaptive")
FILES = (*MATRIX_FILES, "per_second")


def algorithm_of(server: str) -> str:
    return SERVERS[server].get("algorithm", server)


def sources_for(server: str, kind: str) -> dict[str, Any]:
    """The demo API's part of a sources file, as a user describing `server` as `kind` would write it."""
    config = SERVERS[server]
    rate, period = config["rate"], config["period"]
    if kind == "adaptive":
        return {"rate_limits": [], "adaptive": {"initial_rate": 5}}
    if kind == "too_high":
        return {"rate_limits": [{"rate": rate * 1.5, "period": period}]}
    if kind == "per_second":
        return {"rate_limits": [{"rate": rate}]}
    if kind == "rate":
        return {"rate_limits": [{"rate": rate, "period": period}]}
    # exact: the client has no fixed window; a sliding log of the same numbers is what a careful user would pick.
    algorithm = {"fixed_window": "sliding_window_log"}.get(server, algorithm_of(server))
    burst = {"burst": config["burst"]} if algorithm in ("token_bucket", "leaky_bucket") else {}
    return {"rate_limits": [{"rate": rate, "period": period, "algorithm": algorithm, **burst}]}


def rl_pipeline_cell(server: str, kind: str, days: list[str], runs: int, url: str, tmp: Path) -> dict[str, Any]:
    sources = yaml.safe_load(SHIPPED_SOURCES.read_text())
    sources["apis"]["demo"].update(sources_for(server, kind))
    path = Path(tempfile.mkdtemp(dir=tmp)) / "sources.yaml"
    path.write_text(yaml.safe_dump(sources))
    requests.post(f"{url}/_admin/reset", headers=ADMIN, timeout=5)
    result = cli_backfill(days, runs, tmp, {"RL_SOURCES_FILE": str(path)})
    return {**server_counts(url), **result, "failed": result["returncode"] != 0}


def dlt_cell(days: list[str], url: str, tmp: Path) -> dict[str, Any]:
    """dlt's `rest_api` source with its default retries (no client-side limit), merge on id."""
    requests.post(f"{url}/_admin/reset", headers=ADMIN, timeout=5)
    started, failed = time.perf_counter(), False
    try:
        database, table = dlt_load(url, days, Path(tempfile.mkdtemp(dir=tmp)))
    except Exception:  # a failed load is a result here, reported as such
        failed = True
    wall = time.perf_counter() - started
    exact = not failed and table_outcome(database, table, days)["exact"]
    return {**server_counts(url), "wall": wall, "exact": exact, "failed": failed}


def row(name: str, kind: str, r: dict[str, Any]) -> list[str]:
    config = SERVERS[name]
    ideal = r["200"] / (config["rate"] / config["period"])
    share = r["429"] / r["requests"] if r["requests"] else 0.0
    met = r["exact"] and not r["failed"] and share <= 0.005 and r["span"] <= 1.10 * ideal
    return [
        name, kind, str(r["requests"]), str(r["429"]), f"{share:.2%}", f"{ideal:.1f}", f"{r['span']:.1f}",
        f"{r['span'] / ideal:.3f}", f"{r['wall']:.1f}", f"{r['longest_gap']:.1f}", "yes" if r["exact"] else "NO",
        "FAILED" if r["failed"] else "-", "met" if met else "not met",
    ]  # fmt: skip


def report(table: Table, cells: list[str]) -> None:
    """A row into the table, and at once onto stdout: a long matrix shows its cells as they finish."""
    table.add_row(*cells)
    print(" | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=4, help="rl-pipeline backfill --runs")
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(MATRIX))
    parser.add_argument(
        "--files", nargs="*", choices=FILES, default=list(MATRIX_FILES), help="none: the dlt peer alone"
    )
    parser.add_argument("--no-dlt", dest="dlt", action="store_false", help="skip the dlt peer")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds the server takes over each answer (429s come at once)"
    )
    parser.add_argument(
        "--limit-headers", action="store_true", help="the server sends X-RateLimit-Limit/-Remaining/-Reset too"
    )
    args = parser.parse_args()
    days = days_from(date(2024, 1, 1), args.days)
    table = Table(
        "server", "sources file", "requests", "429s", "429 share", "ideal s", "span s", "span / ideal", "wall s",
        "longest gap s", "exact", "failed", "goal",
        title=f"events_offset, {args.days} days, {args.runs} runs at once, answers after {args.latency:g} s, "
        f"{'with' if args.limit_headers else 'no'} limit headers, {os.cpu_count()} cores",
    )  # fmt: skip
    for server in args.servers:
        config = SERVERS[server]
        flags = ["--algorithm", algorithm_of(server), "--period", str(config["period"]), *config["flags"]]
        flags += [] if args.limit_headers else ["--no-limit-headers"]
        with demo_api(config["rate"], config["burst"], 10_000_000, *flags) as url, tempfile.TemporaryDirectory() as tmp:
            if args.latency:
                slow = {"slow_rate": 1.0, "slow_seconds": args.latency}
                requests.post(f"{url}/_admin/faults", headers=ADMIN, json=slow, timeout=5).raise_for_status()
            for kind in args.files:
                report(table, row(server, kind, rl_pipeline_cell(server, kind, days, args.runs, url, Path(tmp))))
            if args.dlt:
                report(table, row(server, f"dlt {version('dlt')} (no file)", dlt_cell(days, url, Path(tmp))))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()

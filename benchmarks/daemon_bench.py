"""A backfill launched as a user launches it: `dagster dev`, its daemon and run queue, runs as processes.

    .venv/bin/python benchmarks/daemon_bench.py [--days 365] [--rate 20] [--runs 1 4] [--no-burst]

For each value of RUNS, `dagster dev` starts on a fresh instance whose
dagster.yaml is the shipped one with `run_queue.max_concurrent_runs: RUNS`.
An asset backfill of `events_offset` for DAYS days is launched over GraphQL
(the mutation the UI's "Launch backfill" sends); the backfill daemon cuts it
into ranged runs of 92 days, the run queue starts RUNS at once, each a
process. Wall time runs from the launch to the last day's materialization
(its event's timestamp); "first request after" is how long the daemon took
to start the first run (the backfill daemon wakes every 30 s). Ideal =
requests / RATE.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import dagster as dg
import requests
import yaml
from harness import ADMIN, days_from, demo_api, refusals, server_counts, table_outcome
from rich.console import Console
from rich.table import Table

from rl_pipeline_tests.support import running_dagster_dev

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


def run(days: list[str], runs: int, url: str, tmp: Path) -> dict:
    requests.post(f"{url}/_admin/reset", headers=ADMIN, timeout=5)
    home, data = tmp / f"home-{runs}", tmp / f"data-{runs}"
    home.mkdir()
    instance = yaml.safe_load((ROOT / "dagster_home" / "dagster.yaml").read_text())
    instance["run_queue"]["max_concurrent_runs"] = runs
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    env = {**os.environ, "DAGSTER_HOME": str(home), "RL_DATA_DIR": str(data)}
    with running_dagster_dev(env, tmp, tmp / f"dagster_dev-{runs}.log") as ui:
        params = {"assetSelection": [{"path": ["events_offset"]}], "partitionNames": days, "fromFailure": False}
        deadline = time.monotonic() + 120
        while True:  # the code location loads after the server answers: until then the asset is unknown
            launched_at = time.time()
            body = requests.post(f"{ui}/graphql", json={"query": LAUNCH, "variables": {"params": params}}, timeout=60)
            launched = (body.json().get("data") or {}).get("launchPartitionBackfill") or body.json()
            if launched.get("__typename") == "LaunchBackfillSuccess":
                break
            assert time.monotonic() < deadline, launched
            time.sleep(0.5)
        # One instance for the whole wait: opening one a second cost this process 13% of a core, taken
        # from the runs it measures on a 2-core machine.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            key = dg.AssetKey("events_offset")
            while len(instance.get_materialized_partitions(key)) < len(days):
                time.sleep(1)
            # When the last day was materialized, not when this poll saw it (up to a second later).
            done_at = instance.get_latest_materialization_event(key).timestamp
        wall = done_at - launched_at
    first_request = min(
        t for t, *_ in requests.get(f"{url}/_admin/stats", headers=ADMIN, timeout=30).json()["requests"]
    )
    return {
        **server_counts(url),
        "wall": wall,
        "waited": first_request - launched_at,
        "exact": table_outcome(data / "warehouse.duckdb", "events_offset", days)["exact"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4], help="run_queue.max_concurrent_runs")
    parser.add_argument("--no-burst", action="store_true", help="the server is a leaky bucket with burst 1")
    args = parser.parse_args()
    server = ["--algorithm", "leaky_bucket"] if args.no_burst else []
    burst = 1 if args.no_burst else int(args.rate)
    days = days_from(date(2024, 1, 1), args.days)
    table = Table(
        "days", "runs at once", "requests", "ideal s", "wall s", "wall / ideal", "first request after s",
        "wall from it / ideal", "span / ideal", "longest gap s", "429s", "dataset exact",
        title=f"Backfill of events_offset under dagster dev at {args.rate:g} req/s (server burst {burst}), "
        f"{os.cpu_count()} cores",
    )  # fmt: skip
    with demo_api(args.rate, burst, 10_000_000, *server) as url, tempfile.TemporaryDirectory() as tmp:
        for runs in args.runs:
            r = run(days, runs, url, Path(tmp))
            ideal = r["requests"] / args.rate
            table.add_row(
                str(args.days), str(runs), str(r["requests"]), f"{ideal:.1f}", f"{r['wall']:.1f}",
                f"{r['wall'] / ideal:.3f}", f"{r['waited']:.1f}", f"{(r['wall'] - r['waited']) / ideal:.3f}",
                f"{r['span'] / ideal:.3f}", f"{r['longest_gap']:.2f}", refusals(r), "yes" if r["exact"] else "NO",
            )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

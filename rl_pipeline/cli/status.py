"""`rl-pipeline status`: per asset, days materialized, failed and missing, with the forecast; per API,
quota, circuits and pace. Needs no token: budgets are kept per credential, so without one they are not shown."""

from __future__ import annotations

import argparse
import math
import os
import time

import dagster as dg
from rich.console import Console
from rich.table import Table

from rl_pipeline.cli.backfill import api_client
from rl_pipeline.cli.environment import use_project_instance
from rl_pipeline.client import ApiClient
from rl_pipeline.clock import iso_time
from rl_pipeline.defs.usage import AssetBacklog, asset_keys, backlogs, outlook, published_limit, rate_history, sparkline
from rl_pipeline.locations import DEFAULT_STATE_STORE, DEFAULT_WAREHOUSE
from rl_pipeline.pace import describe_pace
from rl_pipeline.sources import ApiSpec, load_sources
from rl_pipeline.state import redact_url

PICTURE_MINUTES = 30


def api_forecast(api: str, rows: list[AssetBacklog], client: ApiClient | None, spec: ApiSpec) -> str:
    """One forecast for all of an API's assets: they share its rate and its quota."""
    if client is None:
        return f"forecast {api}: set {spec.token_env} to see it"
    mine = [row for row in rows if row.api == api]
    return f"forecast {api} ({len(mine)} assets together): {outlook(client, mine).describe(client.clock.now())}"


def rate_picture(instance: dg.DagsterInstance, api: str, spec: ApiSpec, now: float) -> str:
    """The requests/s of all of an API's assets together, a bar a minute for the last half hour, against
    the file's limit: `requests demo, last 30 min (a bar a minute, full = 20 req/s): ▁▅███▇  now 19.2 req/s`."""
    rates = rate_history(instance, asset_keys(spec), now, PICTURE_MINUTES, 60.0)
    limit = published_limit(spec)
    full = f"{limit:g} req/s, the file's limit" if limit else f"{max(rates):.1f} req/s, the busiest minute"
    return (
        f"requests {api}, last {PICTURE_MINUTES} min (a bar a minute, full = {full}): "
        f"{sparkline(rates, limit or math.inf)}  last minute {rates[-1]:.1f} req/s"
    )


def cmd_status(args: argparse.Namespace) -> int:
    sources = load_sources()
    use_project_instance()
    clients = {  # status needs no token; without one, the budgets (kept per credential) are not shown
        api: api_client(api, spec)
        for api, spec in sources.apis.items()
        if not spec.token_env or os.environ.get(spec.token_env)
    }
    table = Table("asset", "partitions", "materialized", "failed", "missing", "requests needed")
    instance = dg.DagsterInstance.get()
    rows = backlogs(sources, instance)
    for row in rows:
        counts = (row.partitions, row.materialized, row.failed, row.missing)
        table.add_row(row.asset, *map(str, counts), f"~{row.requests:,.0f}")
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for api, spec in sources.apis.items():
        print(rate_picture(instance, api, spec, time.time()))
        print(api_forecast(api, rows, clients.get(api), spec))
        print_budgets(console, api, spec, clients.get(api))
    store = redact_url(DEFAULT_STATE_STORE)
    print(f"instance {os.environ['DAGSTER_HOME']}; warehouse {DEFAULT_WAREHOUSE}; state store {store}")
    return 0


def print_budgets(console: Console, api: str, spec: ApiSpec, client: ApiClient | None) -> None:
    """Quota used and left, each endpoint's circuit, and the learned pace of one API."""
    if client is None:
        console.print(f"quota, circuits and pace of {api}: kept per credential; set {spec.token_env} to see them")
        return
    if client.quota:
        usage = client.quota.usage()
        left = "unlimited" if usage.left == float("inf") else f"{int(usage.left)} left"
        console.print(f"quota {api}: {usage.day_used} used today, {left}; resets at {iso_time(usage.day_resets_at)}")
    circuits = ", ".join(f"{e}: {client.guard(e).breaker.state().status.value}" for e in client.spec.endpoints)
    print(f"circuits {api}: {circuits}")
    print(f"pace {api}: {describe_pace(client.pace)}")

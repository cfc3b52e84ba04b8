"""One daily-partitioned asset per source endpoint.

No `from __future__ import annotations` here: Dagster reads the `context`
annotation at definition time.
"""

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date
from typing import Any, TypeVar

import dagster as dg

from rl_pipeline.client import ApiClient
from rl_pipeline.clock import iso_time
from rl_pipeline.defs.checks import check_results, check_specs
from rl_pipeline.defs.partitions import MAX_PARTITIONS_PER_RUN, daily_partitions
from rl_pipeline.events import Throttled, to_user
from rl_pipeline.ingest import DayResult, ingest_day
from rl_pipeline.sources import ApiSpec

T = TypeVar("T")
WAITS = ("limiter_wait_s", "retry_wait_s", "circuit_wait_s", "quota_wait_s")


def quota_metadata(client: ApiClient) -> dict[str, float | int | str]:
    if client.quota is None:
        return {}
    usage = client.quota.usage()
    left = {"quota_left_today": usage.day_left} if usage.day_left != math.inf else {}
    month = {"quota_left_this_month": usage.month_left} if usage.month_left != math.inf else {}
    return {"quota_used_today": usage.day_used, **left, **month, "quota_resets_at": iso_time(usage.day_resets_at)}


def missing_after_run(context: dg.AssetExecutionContext) -> int:
    """Partitions of the asset still missing once this run is done (counted once per run: it lists them all)."""
    partitions = context.assets_def.partitions_def
    assert partitions is not None
    done = context.instance.get_materialized_partitions(context.asset_key) | set(context.partition_keys)
    return sum(1 for key in partitions.get_partition_keys() if key not in done)


def summary(metadata: dict) -> str:
    """A markdown table of a day's numbers, for the UI."""
    rows = "\n".join(f"| {name} | {value} |" for name, value in metadata.items() if name != "statuses")
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(metadata["statuses"].items()))
    return f"| | |\n|---|---|\n{rows}\n| responses | {statuses or 'none'} |"


def _in_parallel(fetch: Callable[[str], T], keys: Sequence[str], workers: int) -> Iterator[T]:
    """`fetch(key)` for every key on `workers` threads, results as they finish.

    On the first failure no further key is started; those already running
    finish (their results are still yielded), then the failure is raised.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="day") as pool:
        futures = [pool.submit(fetch, key) for key in keys]
        failure: BaseException | None = None
        for future in as_completed(futures):
            if future.cancelled():
                continue
            error = future.exception()
            if error is None:
                yield future.result()
            elif failure is None:
                failure = error
                for pending in futures:
                    pending.cancel()
        if failure is not None:
            raise failure


def api_resource_key(api: str) -> str:
    return f"{api}_api"


def endpoint_asset(api: str, endpoint: str, spec: ApiSpec) -> dg.AssetsDefinition:
    endpoint_spec = spec.endpoints[endpoint]
    table = endpoint_spec.table_name(endpoint)
    resource_key = api_resource_key(api)

    @dg.asset(
        name=table,
        group_name=api,
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
        required_resource_keys={resource_key, "warehouse"},
        kinds={"duckdb"},
        description=(
            f"Records of {endpoint_spec.path} on API `{api}`, one partition per UTC day, "
            f"upserted on `{endpoint_spec.id_field}` into DuckDB table `{table}`."
        ),
        metadata={"table": table, "endpoint": endpoint_spec.path},
        # Each day is reported as materialized the moment it is committed, so a
        # ranged run that dies on day 17 leaves days 1-16 done in Dagster's
        # partition status, and only the rest is launched again.
        output_required=False,
        check_specs=check_specs(table, endpoint_spec.id_field),
    )
    def _asset(context: dg.AssetExecutionContext) -> Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
        api = getattr(context.resources, resource_key)
        warehouse_resource = context.resources.warehouse
        warehouse = warehouse_resource.warehouse()
        store = api.open_store()
        local, clients = threading.local(), []
        events = Throttled(to_user(context.log.warning))  # one line per kind of wait every 5 s, for all workers

        def fetch(key: str) -> tuple[DayResult, dict[str, Any], ApiClient]:
            # Each worker thread has its own client (a Session, and stats that are this day's alone);
            # all of them share one store, so one rate budget, breaker and quota.
            if not hasattr(local, "client"):
                local.client = api.client(store, on_event=events)
                clients.append(local.client)
            client, started = local.client, time.monotonic()
            before = client.stats.snapshot()
            result = ingest_day(
                client, warehouse, endpoint, date.fromisoformat(key), batch_rows=warehouse_resource.batch_rows
            )
            used = client.stats.since(before)
            used["requests_per_s"] = round(used["requests"] / max(time.monotonic() - started, 1e-3), 2)
            return result, used, client

        missing = missing_after_run(context)
        try:
            for result, used, client in _in_parallel(fetch, context.partition_keys, api.workers):
                metadata = {
                    "records": result.records,
                    "new_records": result.new,
                    "changed_records": result.changed,
                    "pages": result.pages,
                    "resumed": result.resumed,
                    **used,
                    "throttled_s": round(sum(used[k] for k in WAITS), 3),
                    "circuit": client.guard(endpoint).breaker.state().status.value,
                    "pace_req_s": round(client.pace.rate(), 2),
                    "ceiling_req_s": client.pace.policy.ceiling,
                    **quota_metadata(client),
                    "forecast": client.forecast(missing, used["requests"]).describe(client.clock.now()),
                }
                context.log.info(
                    f"{table} {result.day}: {result.records} records, {result.pages} pages, "
                    f"{used['requests']} requests" + (" (resumed from a checkpoint)" if result.resumed else "")
                )
                yield dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=result.day.isoformat(),
                    metadata={**metadata, "summary": dg.MetadataValue.md(summary(metadata))},
                )
            yield from check_results(warehouse, table, endpoint_spec.id_field)
        finally:
            for client in clients:
                client.close()
            store.close()

    return _asset

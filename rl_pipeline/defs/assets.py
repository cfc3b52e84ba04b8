"""One daily-partitioned asset per source endpoint.

No `from __future__ import annotations` here: Dagster reads the `context`
annotation at definition time.
"""

import math
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg

from rl_pipeline.client import ApiClient
from rl_pipeline.clock import iso_time
from rl_pipeline.defs.checks import check_results, check_specs
from rl_pipeline.defs.partitions import MAX_PARTITIONS_PER_RUN, daily_partitions
from rl_pipeline.defs.resources import RateLimitedApi
from rl_pipeline.events import Throttled, to_user
from rl_pipeline.ingest import IngestedDay, ingest_days
from rl_pipeline.sources import ApiSpec
from rl_pipeline.warehouse import TableShape


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


def table_metadata(table_name: str, shape: TableShape | None) -> dict[str, Any]:
    """Dagster's own table keys, which its catalog shows: the table's name, rows and columns."""
    if shape is None:
        return {"dagster/table_name": table_name}
    columns = [dg.TableColumn(name, kind) for name, kind in shape.columns.items()]
    return {
        "dagster/table_name": table_name,
        "dagster/row_count": shape.rows,
        "dagster/partition_row_count": shape.partition_rows,
        "dagster/column_schema": dg.TableSchema(columns=columns),
    }


def day_metadata(day: IngestedDay, endpoint: str, missing: int) -> dict[str, Any]:
    """What the UI shows for one day: records, pages, requests and waits, circuit, pace, quota, forecast."""
    result, used, client = day.result, day.used, day.client
    return {
        "records": result.records,
        "new_records": result.new,
        "changed_records": result.changed,
        "pages": result.pages,
        "resumed": result.resumed,
        **used,
        "throttled_s": round(day.waited, 3),
        "circuit": client.guard(endpoint).breaker.state().status.value,
        "pace_req_s": round(client.pace.rate(), 2),
        "ceiling_req_s": client.pace.policy.ceiling,
        **quota_metadata(client),
        # This asset's days alone, as if it had the API to itself; apis/<api> forecasts them all together.
        "forecast": f"this asset alone: {client.forecast(missing, used['requests']).describe(client.clock.now())}"
        f" (all of {client.name}'s assets together: apis/{client.name})",
    }


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
        yield from materialize_days(context, getattr(context.resources, resource_key), endpoint, table)
        yield from check_results(context.resources.warehouse.warehouse(), table, endpoint_spec.id_field)

    return _asset


def materialize_days(
    context: dg.AssetExecutionContext, resource: RateLimitedApi, endpoint: str, table: str
) -> Iterator[dg.AssetMaterialization]:
    """Every day of the run through `ingest_days`, each reported materialized as soon as it is written."""
    warehouse_resource = context.resources.warehouse
    store = resource.open_store()
    events = Throttled(to_user(context.log.warning))  # one line per kind of wait every 5 s, for all workers
    missing = missing_after_run(context)
    days = [date.fromisoformat(key) for key in context.partition_keys]
    ingested = ingest_days(
        lambda: resource.client(store, on_event=events),
        warehouse_resource.warehouse(),
        endpoint,
        days,
        workers=resource.workers,
        max_workers=resource.max_workers,
        batch_rows=warehouse_resource.batch_rows,
        say=events,
    )
    table_name = warehouse_resource.warehouse().qualified(table)
    try:
        for day in ingested:
            metadata = day_metadata(day, endpoint, missing)
            yield materialization(context, table, day, metadata, table_metadata(table_name, day.result.table))
    finally:
        ingested.close()  # its clients, before the store they use
        store.close()
        events.close()  # what was held back, such as the pace the last 429 set


def materialization(
    context: dg.AssetExecutionContext, table: str, day: IngestedDay, metadata: dict[str, Any], table_keys: dict
) -> dg.AssetMaterialization:
    """One day's materialization, logged as it is reported."""
    result = day.result
    context.log.info(
        f"{table} {result.day}: {result.records} records, {result.pages} pages, {metadata['requests']} requests"
        + (" (resumed from a checkpoint)" if result.resumed else "")
    )
    return dg.AssetMaterialization(
        asset_key=context.asset_key,
        partition=result.day.isoformat(),
        metadata={**metadata, "summary": dg.MetadataValue.md(summary(metadata)), **table_keys},
    )

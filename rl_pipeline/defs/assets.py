"""One daily-partitioned asset per source endpoint.

No `from __future__ import annotations` here: Dagster reads the `context`
annotation at definition time.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from rl_pipeline.ingest import ingest_day
from rl_pipeline.sources import ApiSpec

# A ranged run pays the run's start-up (several seconds under `dagster dev`)
# once for this many days.
MAX_PARTITIONS_PER_RUN = 30


def api_resource_key(api: str) -> str:
    return f"{api}_api"


def daily_partitions(spec: ApiSpec) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=spec.start_date.isoformat(), timezone="UTC")


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
    )
    def _asset(context: dg.AssetExecutionContext) -> Iterator[dg.AssetMaterialization]:
        client = getattr(context.resources, resource_key).client()
        warehouse_resource = context.resources.warehouse
        warehouse = warehouse_resource.warehouse()
        try:
            for key in context.partition_keys:
                before = client.stats.snapshot()
                result = ingest_day(
                    client, warehouse, endpoint, date.fromisoformat(key), batch_rows=warehouse_resource.batch_rows
                )
                used = client.stats.since(before)
                context.log.info(
                    f"{table} {key}: {result.records} records, {result.pages} pages, {used['requests']} requests"
                    + (" (resumed from a checkpoint)" if result.resumed else "")
                )
                yield dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=key,
                    metadata={
                        "records": result.records,
                        "pages": result.pages,
                        "resumed": result.resumed,
                        **used,
                        "circuit": client.breaker(endpoint).state().status.value,
                    },
                )
        finally:
            client.close()
            client.store.close()

    return _asset

"""One daily-partitioned asset per source endpoint.

No `from __future__ import annotations` here: Dagster reads the `context`
annotation at definition time.
"""

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
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        client = getattr(context.resources, resource_key).client()
        warehouse = context.resources.warehouse.warehouse()
        records = pages = 0
        try:
            for key in context.partition_keys:
                result = ingest_day(client, warehouse, endpoint, date.fromisoformat(key))
                records += result.records
                pages += result.pages
                context.log.info(
                    f"{table} {key}: {result.records} records in {result.pages} pages"
                    + (" (resumed from a checkpoint)" if result.resumed else "")
                )
        finally:
            client.close()
            client.store.close()
        stats = client.stats
        return dg.MaterializeResult(
            metadata={
                "partitions": len(context.partition_keys),
                "records": records,
                "pages": pages,
                "requests": stats.requests,
                "retries": stats.retries,
                "http_429": stats.rate_limited,
                "limiter_wait_s": round(stats.limiter_wait_s, 3),
                "retry_wait_s": round(stats.retry_wait_s, 3),
                "statuses": dict(stats.statuses),
            }
        )

    return _asset

"""The quota sensor: launches the next missing partitions that today's quota can pay for."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import dagster as dg

from rl_pipeline.client import ApiClient
from rl_pipeline.clock import iso_time
from rl_pipeline.defs.assets import api_resource_key
from rl_pipeline.defs.partitions import MAX_PARTITIONS_PER_RUN, daily_partitions, range_tags, run_partitions, stretches
from rl_pipeline.sources import ApiSpec

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Until a partition has been fetched once, guess what one costs.
FIRST_GUESS_REQUESTS = 5.0


def requests_per_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> float:
    """What a partition of `key` has cost lately, from its materializations' metadata."""
    costs = [
        record.asset_materialization.metadata["requests"].value
        for record in instance.fetch_materializations(key, limit=100).records
        if record.asset_materialization and "requests" in record.asset_materialization.metadata
    ]
    return max(1.0, sum(costs) / len(costs)) if costs else FIRST_GUESS_REQUESTS


def quota_sensor(api: str, spec: ApiSpec, asset_keys: Iterable[dg.AssetKey]) -> dg.SensorDefinition:
    keys = list(asset_keys)
    resource_key = api_resource_key(api)
    order = spec.quota.backfill_order if spec.quota else "oldest_first"
    reserve = spec.quota.reserve if spec.quota else 0

    @dg.sensor(
        name=f"{api}_quota_sensor",
        asset_selection=keys,
        minimum_interval_seconds=60,
        required_resource_keys={resource_key},
        description=(
            f"Backfills the missing partitions of API `{api}` as its quota allows, {order.replace('_', ' ')}, "
            f"{MAX_PARTITIONS_PER_RUN} days a run, keeping {reserve} requests a day for the daily schedule."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        client = getattr(context.resources, resource_key).client()
        try:
            return launch_affordable(context, client, spec, keys)
        finally:
            client.close()
            client.store.close()

    return _sensor


def launch_affordable(
    context: dg.SensorEvaluationContext, client: ApiClient, spec: ApiSpec, keys: list[dg.AssetKey]
) -> dg.SensorResult | dg.SkipReason:
    """A run of the next missing stretch of each asset that today's quota (less the reserve) pays for;
    else why not, with the forecast."""
    api, reserve = client.name, spec.quota.reserve if spec.quota else 0
    usage = client.quota.usage() if client.quota else None
    budget = usage.left - reserve if usage else math.inf
    requests, waiting, cost_of_missing = [], 0, 0.0
    all_keys = daily_partitions(spec).get_partition_keys(dynamic_partitions_store=context.instance)
    for key, missing, cost in _missing(context, spec, keys, all_keys):
        cost_of_missing += cost * len(missing)
        most = min(MAX_PARTITIONS_PER_RUN, int(budget // cost) if budget != math.inf else len(missing))
        chunk = stretches(missing[:most], all_keys)[0] if most > 0 and missing else []
        waiting += len(missing) - len(chunk)
        if chunk:
            requests.append(dg.RunRequest(asset_selection=[key], tags=range_tags(min(chunk), max(chunk))))
            budget -= cost * len(chunk)
    if requests:
        return dg.SensorResult(run_requests=requests)
    if not waiting:
        return dg.SkipReason(f"{api}: every partition is materialized or in flight")
    assert usage is not None  # only a quota leaves partitions waiting
    outlook = client.forecast(waiting, cost_of_missing / waiting).describe(client.clock.now())
    return dg.SkipReason(
        f"{api}: out of quota for backfills: {max(0, int(usage.left))} requests left today, {reserve} of them "
        f"kept for the daily schedule; resets at {iso_time(usage.day_resets_at)}. Forecast: {outlook}"
    )


def _missing(
    context: dg.SensorEvaluationContext, spec: ApiSpec, keys: list[dg.AssetKey], all_keys: list[str]
) -> Iterator[tuple[dg.AssetKey, list[str], float]]:
    """Per asset: its partitions neither materialized nor in a queued or running run, in the order the
    quota settings ask for, and what one has cost lately."""
    newest_first = spec.quota is not None and spec.quota.backfill_order == "newest_first"
    partitions = daily_partitions(spec)
    running = context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
    for key in keys:
        done = context.instance.get_materialized_partitions(key) | run_partitions(running, key, partitions)
        missing = [p for p in all_keys if p not in done]
        yield key, missing[::-1] if newest_first else missing, requests_per_partition(context.instance, key)

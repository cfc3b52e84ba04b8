"""The quota sensor: launches the next missing partitions that today's quota can pay for."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import dagster as dg

from rl_pipeline.defs.assets import api_resource_key
from rl_pipeline.defs.partitions import MAX_PARTITIONS_PER_RUN, daily_partitions, range_tags, run_partitions
from rl_pipeline.quota import forecast, iso_time
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


def first_run(missing: Sequence[str], all_keys: Sequence[str], most: int) -> list[str]:
    """The leading consecutive stretch of `missing` (in the order given), at most `most` long."""
    position = {p: i for i, p in enumerate(all_keys)}
    chunk: list[str] = []
    for partition in missing[:most]:
        if chunk and abs(position[partition] - position[chunk[-1]]) != 1:
            break
        chunk.append(partition)
    return chunk


def quota_sensor(api: str, spec: ApiSpec, asset_keys: Iterable[dg.AssetKey]) -> dg.SensorDefinition:
    keys = list(asset_keys)
    resource_key = api_resource_key(api)
    partitions = daily_partitions(spec)
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
            usage = client.quota.usage() if client.quota else None
            rate = client.rate_per_second()
        finally:
            client.close()
            client.store.close()
        budget = usage.left - reserve if usage else math.inf
        all_keys = partitions.get_partition_keys(dynamic_partitions_store=context.instance)
        requests, waiting, cost_of_missing = [], 0, 0.0
        running = context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))  # queued or running
        for key in keys:
            done = context.instance.get_materialized_partitions(key) | run_partitions(running, key, partitions)
            missing = [p for p in all_keys if p not in done]
            if order == "newest_first":
                missing.reverse()
            cost = requests_per_partition(context.instance, key)
            cost_of_missing += cost * len(missing)
            affordable = int(budget // cost) if budget != math.inf else len(missing)
            chunk = first_run(missing, all_keys, min(MAX_PARTITIONS_PER_RUN, affordable))
            waiting += len(missing) - len(chunk)
            if chunk:
                first, last = min(chunk), max(chunk)
                requests.append(dg.RunRequest(asset_selection=[key], tags=range_tags(first, last)))
                budget -= cost * len(chunk)
        if requests:
            return dg.SensorResult(run_requests=requests)
        if not waiting:
            return dg.SkipReason(f"{api}: every partition is materialized or in flight")
        assert usage is not None and spec.quota is not None  # only a quota leaves partitions waiting
        now = client.clock.now()
        average = cost_of_missing / waiting
        outlook = forecast(waiting, average, rate, usage, spec.quota.policy(), now, reserve)
        return dg.SkipReason(
            f"{api}: out of quota for backfills: {max(0, int(usage.left))} requests left today, {reserve} of them "
            f"kept for the daily schedule; resets at {iso_time(usage.day_resets_at)}. "
            f"Forecast: {outlook.describe(now)}"
        )

    return _sensor

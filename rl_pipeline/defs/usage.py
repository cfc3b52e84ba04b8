"""One picture per API: how fast all its workers go against its limit, its quota burning down, its backlog.

Each API has an asset of its own, `apis/<api>`, that nothing materializes:
every `OBSERVE_EVERY` seconds (the usage sensor under the daemon, and
`rl-pipeline backfill` while it runs) it gets an observation whose numbers
Dagster's UI plots over time on the asset's Overview (Metadata, Plots) — requests/s of all
the API's assets together over the last minute, the file's limit and the
learned pace beside it, the quota used and left, the days missing and the
hours until they are done. `rl-pipeline status` prints the same numbers, with
the requests/s of the last half hour as a line of bars.

The requests/s are read from the per-day materializations (each says how
many requests its day took), so every run process, worker and machine counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from rl_pipeline.client import ApiClient
from rl_pipeline.defs.assets import api_resource_key
from rl_pipeline.defs.partitions import daily_partitions, run_partitions
from rl_pipeline.defs.sensors import requests_per_partition
from rl_pipeline.quota import Forecast
from rl_pipeline.sources import ApiSpec, SourcesFile

OBSERVE_EVERY = 30  # seconds between two points of the picture
RATE_WINDOW = 60.0  # seconds the achieved requests/s is averaged over
BARS = " ▁▂▃▄▅▆▇█"
BUSY = "busy"  # the usage sensor's cursor while its API is used
PAGE = 1000  # materializations read at a time (Dagster reads at most 10,000)


def usage_key(api: str) -> dg.AssetKey:
    return dg.AssetKey(["apis", api])


def published_limit(spec: ApiSpec) -> float | None:
    """Requests/s the sources file says the API allows; None for one it only learns (`adaptive`)."""
    return spec.pace_policy().ceiling if spec.rate_limits else None


def usage_asset(api: str, spec: ApiSpec) -> dg.AssetSpec:
    limit = published_limit(spec)
    limit_words = f"{limit:g} req/s" if limit else "no published limit"
    return dg.AssetSpec(
        usage_key(api),
        group_name=api,
        kinds={"api"},
        description=(
            f"API `{api}` ({limit_words}): its requests/s (all assets together), limit, learned pace, quota and "
            f"backlog, observed every {OBSERVE_EVERY}s while it is used: Overview, Metadata, Plots."
        ),
    )


@dataclass(frozen=True)
class AssetBacklog:
    api: str
    asset: str
    partitions: int
    materialized: int
    failed: int
    missing: int  # never tried, or tried and not failed
    requests: float  # what its days not yet materialized will take, by what its days took so far


def backlogs(sources: SourcesFile, instance: dg.DagsterInstance, only: str | None = None) -> list[AssetBacklog]:
    """Per asset (of API `only`, else of every API): partitions materialized, failed (and not since
    redone), missing, and the requests those will take."""
    failed_runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    out = []
    for api, spec in sources.apis.items():
        if only not in (None, api):
            continue
        partitions = daily_partitions(spec)
        keys = partitions.get_partition_keys()
        for key in asset_keys(spec):
            done = instance.get_materialized_partitions(key) & set(keys)
            failed = run_partitions(failed_runs, key, partitions) - done
            missing = len(keys) - len(done)
            requests = missing * max(1.0, requests_per_partition(instance, key))
            counts = (len(keys), len(done), len(failed), missing - len(failed))
            out.append(AssetBacklog(api, key.path[-1], *counts, requests))
    return out


def asset_keys(spec: ApiSpec) -> list[dg.AssetKey]:
    return [dg.AssetKey(endpoint.table_name(name)) for name, endpoint in spec.endpoints.items()]


def requests_since(instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey], since: float) -> list[tuple[float, int]]:
    """(when, requests) of every day of `keys` materialized after `since`."""
    out = []
    for key in keys:
        cursor, more = None, True
        while more:
            page = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_timestamp=since), limit=PAGE, cursor=cursor
            )
            for record in page.records:
                entry = record.asset_materialization and record.asset_materialization.metadata.get("requests")
                if entry is not None:
                    out.append((record.timestamp, int(entry.value)))
            cursor, more = page.cursor, page.has_more
    return out


def rate_history(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey], now: float, bins: int, width: float
) -> list[float]:
    """Requests/s of all `keys` together in each of the last `bins` spans of `width` seconds, oldest first."""
    totals = [0] * bins
    start = now - bins * width
    for when, requests in requests_since(instance, keys, start):
        totals[min(bins - 1, int((when - start) // width))] += requests
    return [total / width for total in totals]


def outlook(client: ApiClient, rows: list[AssetBacklog]) -> Forecast:
    """When the missing and failed days of `rows` (one API's assets) will be done, all together."""
    days = sum(row.failed + row.missing for row in rows)
    requests = sum(row.requests for row in rows)
    return client.forecast(days, requests / days if days else 0)


def recent_rate(instance: dg.DagsterInstance, spec: ApiSpec, now: float) -> float:
    """Requests/s of all of the API's assets together over the last RATE_WINDOW seconds."""
    [achieved] = rate_history(instance, asset_keys(spec), now, 1, RATE_WINDOW)
    return achieved


def observe(
    instance: dg.DagsterInstance, sources: SourcesFile, api: str, client: ApiClient, achieved: float | None = None
) -> dg.AssetObservation:
    """One point of API `api`'s picture, now (`achieved`: its recent requests/s, if already read)."""
    spec, now = sources.apis[api], client.clock.now()
    achieved = recent_rate(instance, spec, now) if achieved is None else achieved
    forecast = outlook(client, backlogs(sources, instance, only=api))
    metadata: dict[str, float | int] = {"requests_per_s": round(achieved, 3)}
    if (limit := published_limit(spec)) is not None:
        metadata["limit_per_s"] = limit
    metadata["learned_per_s"] = round(client.pace.rate(), 3)
    if client.quota:
        usage = client.quota.usage()
        metadata["quota_used_today"] = usage.day_used
        if math.isfinite(usage.left):
            metadata["quota_left"] = int(usage.left)
    metadata |= {
        "backlog_days": forecast.partitions,
        "backlog_requests": forecast.requests,
        "done_in_hours": round(max(0.0, forecast.finishes_at - now) / 3600, 4) if forecast.partitions else 0.0,
    }
    return dg.AssetObservation(usage_key(api), metadata=metadata)


def sparkline(rates: list[float], top: float) -> str:
    """`rates` as a line of bars, full height at `top`."""
    scale = top if top > 0 and math.isfinite(top) else max(rates, default=0) or 1
    return "".join(BARS[min(len(BARS) - 1, math.ceil(rate / scale * (len(BARS) - 1)))] for rate in rates)


def usage_sensor(api: str, sources: SourcesFile) -> dg.SensorDefinition:
    """Observes API `api` every OBSERVE_EVERY seconds while its assets are being fetched (or were within the
    last minute), and once more when that ends (the fall to 0 req/s); nothing more while it is idle."""
    resource_key = api_resource_key(api)

    @dg.sensor(
        name=f"{api}_usage_sensor",
        minimum_interval_seconds=OBSERVE_EVERY,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={resource_key},
        description=f"Observes `apis/{api}` every {OBSERVE_EVERY}s while it is used (its Overview: Metadata, Plots).",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        achieved = recent_rate(context.instance, sources.apis[api], time.time())
        busy = achieved > 0 or _in_flight(context.instance)
        if not busy and context.cursor != BUSY:  # idle, and its last point already said so
            return dg.SkipReason(f"API {api} is idle")
        client = getattr(context.resources, resource_key).client()
        try:
            point = observe(context.instance, sources, api, client, achieved)
        finally:
            client.close()
            client.store.close()
        return dg.SensorResult(asset_events=[point], cursor=BUSY if busy else "idle")

    return _sensor


def _in_flight(instance: dg.DagsterInstance) -> bool:
    statuses = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    return bool(instance.get_run_ids(filters=dg.RunsFilter(statuses=statuses), limit=1))

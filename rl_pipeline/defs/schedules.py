"""The daily schedule of each API: when a UTC day has ended, fetch it, and again the days before it
that the sources file says may still grow (`lookback_days`)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import dagster as dg

from rl_pipeline.defs.partitions import range_tags
from rl_pipeline.sources import ApiSpec


def days_to_fetch(spec: ApiSpec, endpoint: str, tick: dg.ScheduleEvaluationContext) -> tuple[str, str] | None:
    """(first, last) day the tick fetches for `endpoint`: the day before the tick, and its lookback."""
    assert tick.scheduled_execution_time is not None
    last = (tick.scheduled_execution_time - timedelta(days=1)).date()
    if last < spec.start_date:
        return None
    first = max(spec.start_date, last - timedelta(days=spec.endpoints[endpoint].lookback_days))
    return first.isoformat(), last.isoformat()


def daily_schedule(api: str, spec: ApiSpec, job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Per tick, one ranged run for each group of endpoints that look back alike (Dagster runs each of a
    tick's requests once, told apart by run key)."""
    keys = {endpoint: dg.AssetKey(e.table_name(endpoint)) for endpoint, e in spec.endpoints.items()}

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=spec.schedule.cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if spec.schedule.running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Fetches the day that just ended from API `{api}` (and each endpoint's `lookback_days`).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        ranges: dict[tuple[str, str], list[dg.AssetKey]] = defaultdict(list)
        for endpoint, key in keys.items():
            span = days_to_fetch(spec, endpoint, context)
            if span is not None:
                ranges[span].append(key)
        if not ranges:
            return dg.SkipReason(f"{api}: no complete day yet (the first is {spec.start_date})")
        return [
            dg.RunRequest(run_key=f"{first}..{last}", asset_selection=selected, tags=range_tags(first, last))
            for (first, last), selected in ranges.items()
        ]

    return _schedule

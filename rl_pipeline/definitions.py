"""The code location: `dagster dev -m rl_pipeline.definitions` (or -w workspace.yaml)."""

from __future__ import annotations

import os

import dagster as dg

from rl_pipeline.defs.assets import api_resource_key, endpoint_asset
from rl_pipeline.defs.resources import DuckDBWarehouse, RateLimitedApi
from rl_pipeline.defs.schedules import daily_schedule
from rl_pipeline.defs.sensors import quota_sensor
from rl_pipeline.defs.usage import usage_asset, usage_sensor
from rl_pipeline.locations import STATE_STORE_ENV
from rl_pipeline.sources import SourcesFile, load_sources


def build_definitions(sources: SourcesFile | None = None, sources_file: str | None = None) -> dg.Definitions:
    """Assets, a daily job, schedule, freshness checks, quota sensor and usage picture per API, and
    resources, from a sources file."""
    sources = sources or load_sources(sources_file)
    assets, jobs, schedules, sensors, checks, resources = [], [], [], [], [], {}
    for api, spec in sources.apis.items():
        api_assets = [endpoint_asset(api, endpoint, spec) for endpoint in spec.endpoints]
        assets += [*api_assets, usage_asset(api, spec)]
        sensors += [quota_sensor(api, spec, [a.key for a in api_assets]), usage_sensor(api, sources)]
        job = dg.define_asset_job(
            f"{api}_daily",
            selection=dg.AssetSelection.groups(api),
            description=f"Every endpoint of API `{api}` for one day.",
        )
        jobs.append(job)
        schedules.append(daily_schedule(api, spec, job))
        # Once `fresh_by` passes, the day before it must be in: a failing check in the UI otherwise.
        checks += dg.build_time_partition_freshness_checks(assets=api_assets, deadline_cron=spec.schedule.fresh_by)
        # Set from the environment, the store URL (it may hold a Redis password) shows in Dagster's
        # config as the variable's name, never its value.
        store = {"state_store": dg.EnvVar(STATE_STORE_ENV)} if os.environ.get(STATE_STORE_ENV) else {}
        resources[api_resource_key(api)] = RateLimitedApi(
            api=api,
            token=dg.EnvVar(spec.token_env) if spec.token_env else None,
            sources_file=sources_file,
            **store,
        )
    resources["warehouse"] = DuckDBWarehouse()
    sensors.append(dg.build_sensor_for_freshness_checks(freshness_checks=checks, minimum_interval_seconds=600))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=resources,
        # A run's steps share one rate budget, so processes of their own would only add start-ups (a Python,
        # Dagster and this code location each) and CPU that makes pacing late: one process a run.
        executor=dg.in_process_executor,
    )


defs = build_definitions()

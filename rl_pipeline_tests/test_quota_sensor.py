"""The quota sensor, tick by tick through evaluate_tick."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import dagster as dg
import pytest

from rl_pipeline.client import credential_fingerprint
from rl_pipeline.defs.partitions import MAX_PARTITIONS_PER_RUN, RANGE_END, RANGE_START
from rl_pipeline.defs.resources import DuckDBWarehouse, RateLimitedApi
from rl_pipeline.defs.sensors import quota_sensor
from rl_pipeline.quota import QuotaLedger
from rl_pipeline.sources import load_sources
from rl_pipeline.state import open_store
from rl_pipeline_tests.support import TOKEN, demo_asset, materialize_range

SPEC = load_sources().apis["demo"]  # quota: 50,000 a day, 500 kept for the schedule
KEYS = [dg.AssetKey(name) for name in SPEC.endpoints]


def tick(instance: dg.DagsterInstance, store_url: str, spec=SPEC, keys=KEYS):
    sensor = quota_sensor("demo", spec, keys)
    resources = {
        "demo_api": RateLimitedApi(api="demo", token=TOKEN, state_store=store_url),
        "warehouse": DuckDBWarehouse(path="unused.duckdb"),
    }
    definitions = dg.Definitions(
        assets=[demo_asset(key.path[-1]) for key in KEYS], sensors=[sensor], resources=resources
    )
    context = dg.build_sensor_context(instance=instance, resources=resources, definitions=definitions)
    return sensor.evaluate_tick(context)


def ranges(result) -> dict[str, tuple[str, str]]:
    return {
        request.asset_selection[0].path[-1]: (request.tags[RANGE_START], request.tags[RANGE_END])
        for request in result.run_requests
    }


def spend(store_url: str, requests: int) -> None:
    ledger = QuotaLedger(
        open_store(store_url), "demo", SPEC.quota.policy(), key=f"quota:demo:{credential_fingerprint(TOKEN)}"
    )
    ledger.charge(requests)


def run_from(first: str) -> tuple[str, str]:
    """The longest run the sensor launches, from `first`."""
    return first, (date.fromisoformat(first) + timedelta(days=MAX_PARTITIONS_PER_RUN - 1)).isoformat()


def test_a_fresh_instance_gets_a_run_of_the_oldest_days_of_every_asset(store_url) -> None:
    result = tick(dg.DagsterInstance.ephemeral(), store_url)
    assert ranges(result) == {key.path[-1]: run_from("2024-01-01") for key in KEYS}


def test_materialized_and_in_flight_partitions_are_never_launched(demo_api, warehouse, store_url) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_range(
        ["events_offset"], "2024-01-01", "2024-01-03", warehouse, store_url, instance=instance
    ).success
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            asset_selection=frozenset({dg.AssetKey("events_link")}),
            tags={RANGE_START: "2024-01-01", RANGE_END: "2024-01-10"},
        )
    )
    launched = ranges(tick(instance, store_url))
    assert launched["events_offset"] == run_from("2024-01-04")
    assert launched["events_link"] == run_from("2024-01-11")
    assert launched["events_cursor"] == run_from("2024-01-01")


def test_only_what_the_quota_pays_for_is_launched_keeping_the_reserve(store_url) -> None:
    spend(store_url, 50_000 - 500 - 12)  # 12 requests left above the reserve: two days at the first guess of 5
    launched = ranges(tick(dg.DagsterInstance.ephemeral(), store_url))
    assert launched == {KEYS[0].path[-1]: ("2024-01-01", "2024-01-02")}


def test_out_of_quota_skips_saying_what_is_left_when_it_resets_and_the_forecast(store_url) -> None:
    spend(store_url, 50_000 - 500)
    result = tick(dg.DagsterInstance.ephemeral(), store_url)
    assert not result.run_requests
    message = result.skip_message
    assert message.startswith("demo: out of quota for backfills: 500 requests left today, 500 of them kept")
    assert "resets at " in message and "T00:00:00Z" in message
    assert "Forecast: " in message and "limited by the daily quota" in message


@pytest.mark.parametrize("order", ["newest_first"])
def test_the_order_is_configurable(order, store_url) -> None:
    spec = SPEC.model_copy(update={"quota": SPEC.quota.model_copy(update={"backfill_order": order})})
    result = tick(dg.DagsterInstance.ephemeral(), store_url, spec, KEYS[:1])
    ((first, last),) = ranges(result).values()
    all_keys = dg.DailyPartitionsDefinition(start_date="2024-01-01").get_partition_keys()
    assert (first, last) == (all_keys[-MAX_PARTITIONS_PER_RUN], all_keys[-1])

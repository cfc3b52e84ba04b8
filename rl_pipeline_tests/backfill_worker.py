"""A backfill run in its own process, as Dagster runs one: `python -m rl_pipeline_tests.backfill_worker`.

Materializes one asset for a range of days with a chosen state store and
warehouse; used by the tests that need real concurrent processes.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from rl_pipeline.defs.assets import endpoint_asset
from rl_pipeline.defs.resources import DuckDBWarehouse, RateLimitedApi
from rl_pipeline.sources import load_sources


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--asset", required=True)
    parser.add_argument("--first", required=True)
    parser.add_argument("--last", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--warehouse", required=True)
    args = parser.parse_args()
    result = dg.materialize(
        [endpoint_asset("demo", args.asset, load_sources().apis["demo"])],
        resources={
            "demo_api": RateLimitedApi(api="demo", token=dg.EnvVar("RL_DEMO_API_TOKEN"), state_store=args.store),
            "warehouse": DuckDBWarehouse(path=args.warehouse),
        },
        tags={"dagster/asset_partition_range_start": args.first, "dagster/asset_partition_range_end": args.last},
        raise_on_error=False,
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())

"""A backfill run in its own process, as Dagster runs one: `python -m rl_pipeline_tests.backfill_worker`.

Materializes one asset for a range of days with a chosen state store and
warehouse; used by the tests that need real concurrent or killed processes.
Prints one JSON line per materialized day.
"""

from __future__ import annotations

import argparse
import json
import sys

import dagster as dg

from rl_pipeline.defs.partitions import stretches
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import day_range, materialize_range


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--asset", required=True)
    parser.add_argument("--first", required=True)
    parser.add_argument("--last", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--batch-rows", type=int)
    parser.add_argument("--api-config", default="{}", help="JSON of RateLimitedApi fields")
    parser.add_argument(
        "--missing-only", action="store_true", help="like a relaunched backfill: skip days the instance has done"
    )
    args = parser.parse_args()
    instance = dg.DagsterInstance.get() if args.missing_only else None  # the one at $DAGSTER_HOME
    days = every_day = day_range(args.first, args.last)
    if instance is not None:
        done = instance.get_materialized_partitions(dg.AssetKey(args.asset))
        days = [day for day in days if day not in done]
    ok = True
    # A relaunch runs each stretch of missing days, not the days already done between them.
    for first, last in ((run[0], run[-1]) for run in stretches(days, every_day, size=len(every_day))):
        result = materialize_range(
            [args.asset],
            first,
            last,
            Warehouse(args.warehouse),
            args.store,
            instance=instance,
            batch_rows=args.batch_rows,
            **json.loads(args.api_config),
        )
        for event in result.asset_materializations_for_node(args.asset):
            metadata = {k: v.value for k, v in event.metadata.items() if k != "dagster/column_schema"}
            print(json.dumps({"partition": event.partition, **metadata}))
        if not result.success:
            print(result.failure_data_for_node(args.asset).error, file=sys.stderr)
            ok = False
            break
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

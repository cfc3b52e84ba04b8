"""Days as Dagster partitions: the partitions definition, the tags of a ranged run, and which days runs cover."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from rl_pipeline.sources import MAX_PARTITIONS_PER_RUN, ApiSpec

RANGE_START, RANGE_END, PARTITION = (
    "dagster/asset_partition_range_start",
    "dagster/asset_partition_range_end",
    "dagster/partition",
)
__all__ = [
    "MAX_PARTITIONS_PER_RUN",
    "PARTITION",
    "RANGE_END",
    "RANGE_START",
    "daily_partitions",
    "range_tags",
    "run_partitions",
    "stretches",
]


def daily_partitions(spec: ApiSpec) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from the API's `start_date` to the last complete day."""
    return dg.DailyPartitionsDefinition(start_date=spec.start_date.isoformat(), timezone="UTC")


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run over the days first..last."""
    return {RANGE_START: first, RANGE_END: last}


def run_partitions(runs: Iterable[dg.DagsterRun], key: dg.AssetKey, partitions: dg.PartitionsDefinition) -> set[str]:
    """Partitions of `key` that `runs` cover (a range, or a single partition)."""
    found: set[str] = set()
    for run in runs:
        if run.asset_selection is not None and key not in run.asset_selection:
            continue
        if RANGE_START in run.tags and RANGE_END in run.tags:
            span = dg.PartitionKeyRange(run.tags[RANGE_START], run.tags[RANGE_END])
            found.update(partitions.get_partition_keys_in_range(span))
        elif PARTITION in run.tags:
            found.add(run.tags[PARTITION])
    return found


def stretches(days: Sequence[str], all_keys: Sequence[str], size: int = MAX_PARTITIONS_PER_RUN) -> list[list[str]]:
    """`days` cut into runs of consecutive days (in the order given: oldest or newest first), each at most
    `size` long."""
    position = {key: i for i, key in enumerate(all_keys)}
    out: list[list[str]] = []
    for day in days:
        if out and abs(position[day] - position[out[-1][-1]]) == 1 and len(out[-1]) < size:
            out[-1].append(day)
        else:
            out.append([day])
    return out

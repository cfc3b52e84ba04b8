"""The Dagster layer: resources, one asset per endpoint, jobs and schedules."""

import warnings

import dagster as dg

# Dagster 1.13 marks `BackfillPolicy` (and a few other parts used here) beta or preview and warns on every
# load, in every run process: nothing a user of this project can act on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
# The new FreshnessPolicy that supersedes freshness checks judges an asset by its latest materialization, so a
# backfilled old day would make a stale asset look fresh; the partition-aware checks need their sensor.
for superseded in ("build_time_partition_freshness_checks", "build_sensor_for_freshness_checks"):
    warnings.filterwarnings("ignore", message=f"Function `{superseded}` is superseded")

"""The Dagster layer: resources, one asset per endpoint, jobs and schedules."""

import warnings

import dagster as dg

# Dagster 1.13 marks `BackfillPolicy` (and a few other parts used here) beta or preview and warns on every
# load, in every run process: nothing a user of this project can act on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

"""`rl-pipeline`, the command line: the demo, headless backfills, status, queries.

Built on the Dagster layer (`rl_pipeline.definitions`) and the instance at
$DAGSTER_HOME, so runs, partition status and events are the ones the UI shows.
"""

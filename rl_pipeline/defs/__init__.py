"""The Dagster layer: resources, one asset per endpoint, jobs and schedules."""

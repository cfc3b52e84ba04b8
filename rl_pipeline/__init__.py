"""rl_pipeline: rate-limited HTTP APIs into DuckDB, orchestrated by Dagster."""

__version__ = "0.1.0"

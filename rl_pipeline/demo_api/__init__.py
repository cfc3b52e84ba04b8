"""A real HTTP server that behaves like a strict third-party API."""

from rl_pipeline.demo_api.data import day_records
from rl_pipeline.demo_api.server import DemoApiConfig, DemoApiServer

__all__ = ["DemoApiConfig", "DemoApiServer", "day_records"]

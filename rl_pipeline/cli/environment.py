"""What every command that starts processes sets up: the project's Dagster instance, and signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from rl_pipeline.locations import DAGSTER_HOME


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, even where a parent shell had
    them ignored; children started afterwards get the default handling back."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def use_project_instance() -> None:
    """The project's instance (`dagster_home/` of the project root, see `locations`), unless DAGSTER_HOME says
    otherwise; run processes started from here inherit it."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", DAGSTER_HOME))
    home.mkdir(exist_ok=True)

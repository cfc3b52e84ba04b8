"""Where the program keeps its files by default; each can be moved by an environment variable.

No Dagster here: the CLI reads these without paying Dagster's import.
"""

from __future__ import annotations

import os

DATA_DIR = os.environ.get("RL_DATA_DIR", "data")
DEFAULT_STATE_STORE = os.environ.get("RL_STATE_STORE", f"sqlite:///{DATA_DIR}/state.sqlite")
DEFAULT_WAREHOUSE = os.environ.get("RL_WAREHOUSE", f"{DATA_DIR}/warehouse.duckdb")

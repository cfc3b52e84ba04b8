"""Where the program keeps its files by default; each can be moved by an environment variable.

The defaults are found from the project's root — the nearest directory, from
the current one up, that holds `dagster_home/` — so every shell inside the
project shares one instance, one warehouse and one state store (one rate
budget), whichever subdirectory it runs in. No Dagster here: the CLI reads
these without paying Dagster's import.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The nearest directory from `start` (the current one) up that holds `dagster_home/`; else `start`."""
    here = (start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / "dagster_home").is_dir()), here)


ROOT = project_root()
DAGSTER_HOME = os.environ.get("DAGSTER_HOME", str(ROOT / "dagster_home"))
DATA_DIR = os.environ.get("RL_DATA_DIR", str(ROOT / "data"))
STATE_STORE_ENV = "RL_STATE_STORE"
DEFAULT_STATE_STORE = os.environ.get(STATE_STORE_ENV, f"sqlite:///{DATA_DIR}/state.sqlite")
DEFAULT_WAREHOUSE = os.environ.get("RL_WAREHOUSE", f"{DATA_DIR}/warehouse.duckdb")

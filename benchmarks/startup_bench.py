"""What a run process pays before its first request: Python, Dagster, the code location, the run itself.

    .venv/bin/python benchmarks/startup_bench.py [--repeat 5]

Each step is a fresh process, timed from spawn to exit, median of REPEAT:
bare Python; `import dagster`; `import rl_pipeline.definitions` (the code
location: sources file, assets, resources); and a whole `rl-pipeline
_run-chunk` of one day with no records, answered by a demo API in its own
process (the run's own set-up and tear-down on a Dagster instance, and one
request). The differences are what each layer adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import demo_api
from rich.console import Console
from rich.table import Table


def timed(command: list[str], env: dict[str, str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    python = [sys.executable, "-c"]
    with demo_api(1000, 1000) as _, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, "DAGSTER_HOME": str(home), "RL_DATA_DIR": str(Path(tmp) / "data")}
        steps = {
            "python": [*python, "pass"],
            "+ import dagster": [*python, "import dagster"],
            "+ the code location": [*python, "import rl_pipeline.definitions"],
            "+ a run of one day": [sys.executable, "-m", "rl_pipeline.cli", "_run-chunk", "events_offset",
                                   "2024-01-09", "2024-01-09"],  # an empty day: one request
        }  # fmt: skip
        table = Table("step", "seconds (median)", "added", title=f"Run process start-up, {os.cpu_count()} cores")
        previous = 0.0
        for name, command in steps.items():
            seconds = timed(command, env, args.repeat)
            table.add_row(name, f"{seconds:.2f}", f"{seconds - previous:+.2f}")
            previous = seconds
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

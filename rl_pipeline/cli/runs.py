"""The run processes of a headless backfill: one ranged Dagster run each, and what they tell the parent.

A run process is `python -m rl_pipeline.cli _run-chunk`; it runs on the
$DAGSTER_HOME instance, so its run, events and partitions are the UI's. What
its user should see at once goes to its log as EVENT lines; why it failed,
as one CAUSE line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from rl_pipeline import events
from rl_pipeline.cli.environment import interrupt_on_signals
from rl_pipeline.defs.partitions import range_tags

if TYPE_CHECKING:  # the type of a step failure's error; Dagster does not export it
    from dagster_shared.error import SerializableErrorInfo

CAUSE = "rl-pipeline cause: "  # the line of a run process's output that says why it failed
FAILURE = "rl-pipeline failure, in full:"  # heads the whole error of a failed run, after the run
EVENT = "rl-pipeline event: "  # a line of a run process's output that its user should see at once
BACKFILL_TAG = "rl-pipeline/backfill"  # on every run of one `rl-pipeline backfill`: asset, range, start
# Words of a cause that a later rerun may get past; a wrong token, a 4xx or bad data it will not.
_PASSING = ("HTTP 5", "gave up after", "deadline", "circuit open", "cannot reach", "has never answered", "quota of")


def run_chunk(asset: str, first: str, last: str, run_id: str, label: str) -> int:
    """One ranged run of `asset`, in this process, on the $DAGSTER_HOME instance, as run `run_id` tagged
    with the backfill's `label`. What the run tells its user goes to stderr as EVENT lines, its failure's
    root cause as a CAUSE line; an interrupted run (the parent marked it canceling) ends CANCELED."""
    from rl_pipeline.definitions import defs

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(EVENT + "%(message)s"))
    events.LOGGER.addHandler(handler)
    events.LOGGER.setLevel(logging.INFO)
    events.LOGGER.propagate = False
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        asset_selection=[dg.AssetKey(asset)],
        run_id=run_id,
        tags={**range_tags(first, last), BACKFILL_TAG: label},
        raise_on_error=False,
    )
    if result.dagster_run.status == dg.DagsterRunStatus.CANCELED:
        return 130
    if not result.success:
        step_failure = next((e for e in result.all_events if e.is_step_failure), None)
        error = step_failure.step_failure_data.error if step_failure else None
        if error is not None:
            # Dagster's own STEP_FAILURE lines reach this output through its log capture, whose tail of the
            # captured file may stop before the last second of it: the whole error is written here again.
            print(f"{FAILURE}\n{error.to_string()}", file=sys.stderr)
        print(CAUSE + (root_cause(error) if error else "the run failed"), file=sys.stderr, flush=True)
    return 0 if result.success else 1


def root_cause(error: SerializableErrorInfo) -> str:
    """The innermost error of a Dagster failure, on one line: `ApiError: source …, page 3: HTTP 401 …`."""
    while error.cause is not None:
        error = error.cause
    first = next((line for line in error.message.strip().splitlines() if line.strip()), "the run failed")
    return re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=\w+: )", "", first)


def cause_in(log: Path, returncode: int) -> str:
    """Why a run process failed, from its log, with where the whole log is."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    cause = next((line.removeprefix(CAUSE) for line in reversed(lines) if line.startswith(CAUSE)), None)
    return f"{cause or f'the run process exited with code {returncode}'} (full log: {log})"


def rerun_may_help(cause: str) -> bool:
    return cause == "interrupted" or any(words in cause for words in _PASSING)


class RunProcess:
    """One ranged run in a child process (`rl-pipeline _run-chunk`), its output going to `log`."""

    def __init__(self, asset: str, first: str, last: str, label: str, logs: Path) -> None:
        self.run_id, self.log = str(uuid.uuid4()), logs / f"{asset}-{first}-{last}.log"
        self._read = 0
        with self.log.open("w") as output:  # the child's Dagster log, warnings and tracebacks: all there
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rl_pipeline.cli", "_run-chunk", asset, first, last, self.run_id, label],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the parent, which passes it on
            )

    def new_events(self) -> list[str]:
        """The EVENT lines the run wrote since the last call."""
        with self.log.open("rb") as output:
            output.seek(self._read)
            text = output.read()
        complete = text[: text.rfind(b"\n") + 1]
        self._read += len(complete)
        lines = complete.decode(errors="replace").splitlines()
        return [line.removeprefix(EVENT) for line in lines if line.startswith(EVENT)]

    def failure(self) -> str | None:
        """Why the finished process failed, or None if it succeeded."""
        code = self.process.returncode
        return None if code == 0 else cause_in(self.log, code)

    def cancel(self, instance: dg.DagsterInstance) -> None:
        """Ask the run to stop as Dagster's own termination does: mark it canceling, then interrupt it."""
        run = instance.get_run_by_id(self.run_id)
        if run is not None and not run.is_finished:
            instance.report_run_canceling(run, message="Interrupted (Ctrl-C) by rl-pipeline backfill")
        os.killpg(self.process.pid, signal.SIGINT)


def cmd_run_chunk(args: argparse.Namespace) -> int:
    interrupt_on_signals()
    return run_chunk(args.asset, args.first, args.last, args.run_id, args.label)

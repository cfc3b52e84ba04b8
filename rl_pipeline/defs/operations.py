"""Headless operations on the code location's Dagster instance: backfill and status.

They use the instance at $DAGSTER_HOME (the one `dagster dev` and the UI
show), so partition status, runs and events are the same whichever started them.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from rl_pipeline import events
from rl_pipeline.client import ApiClient
from rl_pipeline.defs.partitions import MAX_PARTITIONS_PER_RUN, daily_partitions, range_tags, run_partitions
from rl_pipeline.defs.sensors import requests_per_partition
from rl_pipeline.quota import forecast
from rl_pipeline.sources import ApiSpec, SourcesFile

if TYPE_CHECKING:  # the type of a step failure's error; Dagster does not export it
    from dagster_shared.error import SerializableErrorInfo


class UsageError(ValueError):
    """A bad argument: the message is one line fit for the user."""


def find_asset(sources: SourcesFile, name: str) -> tuple[str, ApiSpec]:
    """The API that serves the asset `name` (the endpoint's table)."""
    for api, spec in sources.apis.items():
        if any(endpoint.table_name(endpoint_name) == name for endpoint_name, endpoint in spec.endpoints.items()):
            return api, spec
    known = sorted(e.table_name(n) for s in sources.apis.values() for n, e in s.endpoints.items())
    raise UsageError(f"unknown asset {name!r} (known: {', '.join(known)})")


def partition_keys(spec: ApiSpec) -> list[str]:
    return daily_partitions(spec).get_partition_keys()


def check_range(spec: ApiSpec, first: str, last: str) -> tuple[str, str]:
    """Validated ISO dates within the asset's partitions."""
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as exc:
        raise UsageError(f"dates must be YYYY-MM-DD: {exc}") from None
    if start > end:
        raise UsageError(f"--from {first} is after --to {last}")
    if start < spec.start_date:
        raise UsageError(f"--from {first} is before the first partition, {spec.start_date}")
    keys = partition_keys(spec)
    if not keys or end.isoformat() > keys[-1]:
        raise UsageError(f"--to {last} is after the last complete day, {keys[-1] if keys else 'none yet'}")
    return start.isoformat(), end.isoformat()


def chunks(days: list[str], all_keys: list[str], size: int = MAX_PARTITIONS_PER_RUN) -> list[tuple[str, str]]:
    """Consecutive stretches of `days`, each at most `size` long, as (first, last)."""
    position = {key: i for i, key in enumerate(all_keys)}
    out: list[list[str]] = []
    for day in days:
        if out and position[day] == position[out[-1][-1]] + 1 and len(out[-1]) < size:
            out[-1].append(day)
        else:
            out.append([day])
    return [(run[0], run[-1]) for run in out]


@dataclass
class Progress:
    done: int = 0
    records: int = 0
    requests: int = 0
    http_429: int = 0
    retries: int = 0
    seconds: float = 0.0
    days: set[str] = field(default_factory=set)


def progress_since(instance: dg.DagsterInstance, asset: str, days: set[str], since: float) -> Progress:
    """What the materializations of `days` recorded after `since` add up to."""
    found = Progress()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_timestamp=since), limit=10_000
    ).records
    for record in records:
        event = record.asset_materialization
        if event is None or event.partition not in days or event.partition in found.days:
            continue
        found.days.add(event.partition)
        meta = {name: value.value for name, value in event.metadata.items()}
        found.records += int(meta.get("records", 0))
        found.requests += int(meta.get("requests", 0))
        found.http_429 += int(meta.get("http_429", 0))
        found.retries += int(meta.get("retries", 0))
    found.done = len(found.days)
    return found


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
        cause = root_cause(step_failure.step_failure_data.error) if step_failure else "the run failed"
        print(CAUSE + cause, file=sys.stderr, flush=True)
    return 0 if result.success else 1


CAUSE = "rl-pipeline cause: "  # the line of a run process's output that says why it failed
EVENT = "rl-pipeline event: "  # a line of a run process's output that its user should see at once
BACKFILL_TAG = "rl-pipeline/backfill"  # on every run of one `rl-pipeline backfill`: asset, range, start


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


# Words of a cause that a later rerun may get past; a wrong token, a 4xx or bad data it will not.
_PASSING = ("HTTP 5", "gave up after", "deadline", "circuit open", "cannot reach", "has never answered", "quota of")


def rerun_may_help(cause: str) -> bool:
    return cause == "interrupted" or any(words in cause for words in _PASSING)


RUNS_AT_ONCE = 4  # run processes start up (~1.5 s) while others fetch; see docs/benchmarks.md


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

    def cancel(self, instance: dg.DagsterInstance) -> None:
        """Ask the run to stop as Dagster's own termination does: mark it canceling, then interrupt it."""
        run = instance.get_run_by_id(self.run_id)
        if run is not None and not run.is_finished:
            instance.report_run_canceling(run, message="Interrupted (Ctrl-C) by rl-pipeline backfill")
        os.killpg(self.process.pid, signal.SIGINT)


def backfill(
    asset: str,
    first: str,
    last: str,
    spec: ApiSpec,
    on_progress: Callable[[Progress, int, list[str]], None],
    runs_at_once: int = RUNS_AT_ONCE,
) -> tuple[Progress, int, str | None]:
    """Materialize the missing days first..last in `runs_at_once` ranged runs, each a child process
    (they share one rate budget), until done, failed or interrupted. Each day is reported materialized
    as it is written, so a failed or interrupted run leaves its finished days done; an interrupted
    run ends CANCELED. On a failure no further run starts; those running finish. `on_progress` hears
    the progress about twice a second, with what the runs said meanwhile (retries, 429s, waits).
    Returns (progress, days wanted, error)."""
    instance = dg.DagsterInstance.get()
    all_keys = partition_keys(spec)
    wanted = [key for key in all_keys if first <= key <= last]
    done = instance.get_materialized_partitions(dg.AssetKey(asset))
    missing = [key for key in wanted if key not in done]
    started = time.time()
    total = Progress(done=len(wanted) - len(missing))
    # As many runs as may go at once, each a stretch of the missing days: every run process pays its
    # start-up before the first request, none while others fetch (a start-up mid-backfill leaves the
    # limit idle when the runs before it end together, and its CPU load delays others' sends).
    waiting = chunks(missing, all_keys, size=max(1, math.ceil(len(missing) / max(1, runs_at_once))))
    label = f"{asset} {first}..{last}, started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started))}"
    logs = Path(instance.root_directory) / "logs" / "backfills"
    logs.mkdir(parents=True, exist_ok=True)
    running: list[RunProcess] = []
    error: str | None = None
    try:
        while waiting or running:
            while waiting and error is None and len(running) < max(1, runs_at_once):
                running.append(RunProcess(asset, *waiting.pop(0), label, logs))
            finished = [run for run in running if run.process.poll() is not None]
            said = [line for run in running for line in run.new_events()]
            for run in finished:
                running.remove(run)
                if run.process.returncode != 0 and error is None:
                    error = cause_in(run.log, run.process.returncode)
            if error is not None and not running:
                break
            on_progress(_merge(total, instance, asset, set(missing), started), len(wanted), said)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for run in running:
            run.cancel(instance)
        for run in running:
            run.process.wait()
        return _merge(total, instance, asset, set(missing), started), len(wanted), "interrupted"
    final = _merge(total, instance, asset, set(missing), started)
    on_progress(final, len(wanted), [])
    return final, len(wanted), error


def _merge(base: Progress, instance: dg.DagsterInstance, asset: str, days: set[str], since: float) -> Progress:
    fresh = progress_since(instance, asset, days, since)
    fresh.done += base.done
    fresh.seconds = time.time() - since
    return fresh


@dataclass
class AssetStatus:
    asset: str
    partitions: int
    materialized: int
    failed: int
    missing: int
    forecast: str


def status(
    sources: SourcesFile, clients: dict[str, ApiClient], instance: dg.DagsterInstance | None = None
) -> list[AssetStatus]:
    """Per asset: partitions materialized, failed (and not since redone), missing; with the forecast
    where `clients` has the API's client (budgets are kept per credential: no token, no forecast).
    `instance`: the $DAGSTER_HOME one unless given."""
    instance = instance or dg.DagsterInstance.get()
    failed_runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    now = time.time()
    out = []
    for api, spec in sources.apis.items():
        keys = partition_keys(spec)
        client = clients.get(api)
        partitions = daily_partitions(spec)
        usage = client.quota.usage() if client and client.quota else None
        for endpoint_name, endpoint in spec.endpoints.items():
            key = dg.AssetKey(endpoint.table_name(endpoint_name))
            done = instance.get_materialized_partitions(key) & set(keys)
            failed = run_partitions(failed_runs, key, partitions) - done
            missing = len(keys) - len(done)
            outlook = "no quota configured" if client else f"set {spec.token_env} to see it"
            if client and client.quota and usage and spec.quota:
                cost = requests_per_partition(instance, key)
                rate = client.rate_per_second()
                result = forecast(missing, cost, rate, usage, client.quota.policy, now, spec.quota.reserve)
                outlook = result.describe(now)
            out.append(AssetStatus(key.path[-1], len(keys), len(done), len(failed), missing - len(failed), outlook))
    return out


def eta_seconds(progress: Progress, wanted: int) -> float | None:
    """Time left at this session's pace, once a day has been done in it."""
    if not progress.days:
        return None
    return progress.seconds / len(progress.days) * (wanted - progress.done)

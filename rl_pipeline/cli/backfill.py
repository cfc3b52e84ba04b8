"""`rl-pipeline backfill`: the missing days of a range, in ranged runs at once, with a live line.

Each run is a child process (see `runs`) on the $DAGSTER_HOME instance, so
partition status, runs and events are the same whichever started them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rl_pipeline.cli.environment import interrupt_on_signals, use_project_instance
from rl_pipeline.cli.runs import RunProcess, rerun_may_help
from rl_pipeline.client import ApiClient
from rl_pipeline.defs.partitions import daily_partitions, stretches
from rl_pipeline.defs.resources import RateLimitedApi
from rl_pipeline.defs.usage import OBSERVE_EVERY, observe
from rl_pipeline.errors import UsageError
from rl_pipeline.sources import ApiSpec, SourcesFile, load_sources

RUNS_AT_ONCE = 4  # run processes start up (~1.5 s) while others fetch; see docs/benchmarks.md
QUIET_AFTER = 10.0  # seconds a run's last word stays on the live line


def find_asset(sources: SourcesFile, name: str) -> tuple[str, ApiSpec]:
    """The API that serves the asset `name` (the endpoint's table)."""
    for api, spec in sources.apis.items():
        if any(endpoint.table_name(endpoint_name) == name for endpoint_name, endpoint in spec.endpoints.items()):
            return api, spec
    known = sorted(e.table_name(n) for s in sources.apis.values() for n, e in s.endpoints.items())
    raise UsageError(f"unknown asset {name!r} (known: {', '.join(known)})")


def missing_token(api: str, spec: ApiSpec) -> str | None:
    """What to say when the API's token variable is not set, else None."""
    if spec.token_env and not os.environ.get(spec.token_env):
        return f"API {api} needs its token: set the environment variable {spec.token_env}"
    return None


def api_client(api: str, spec: ApiSpec) -> ApiClient:
    """A client of API `api` on the project's state store, its token from the environment (if set)."""
    return RateLimitedApi(api=api, token=os.environ.get(spec.token_env) if spec.token_env else None).client()


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
    keys = daily_partitions(spec).get_partition_keys()
    if not keys or end.isoformat() > keys[-1]:
        raise UsageError(f"--to {last} is after the last complete day, {keys[-1] if keys else 'none yet'}")
    return start.isoformat(), end.isoformat()


@dataclass
class BackfillProgress:
    """Days done (before and during this backfill) and what this backfill's runs recorded for them."""

    done: int = 0
    records: int = 0
    requests: int = 0
    http_429: int = 0
    retries: int = 0
    seconds: float = 0.0
    days: set[str] = field(default_factory=set)

    def eta_seconds(self, wanted: int) -> float | None:
        """Time left at this backfill's pace, once a day has been done in it."""
        if not self.days:
            return None
        return self.seconds / len(self.days) * (wanted - self.done)


class Tally:
    """What the materializations of `days` recorded after `since` add up to; each `read` asks the instance
    only for the events written since the one before (the CLI polls twice a second, for years of days)."""

    def __init__(self, instance: dg.DagsterInstance, asset: str, days: set[str], since: float) -> None:
        self.instance, self.days = instance, days
        self.filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_timestamp=since)
        self.found = BackfillProgress()
        self.cursor: str | None = None

    def read(self) -> BackfillProgress:
        while True:
            page = self.instance.fetch_materializations(self.filter, limit=1000, cursor=self.cursor, ascending=True)
            for record in page.records:
                self._add(record.asset_materialization)
            self.cursor = page.cursor if page.records else self.cursor
            if not page.has_more:
                return replace(self.found, done=len(self.found.days))

    def _add(self, event: dg.AssetMaterialization | None) -> None:
        found = self.found
        if event is None or event.partition not in self.days or event.partition in found.days:
            return
        found.days.add(event.partition)
        meta = {name: value.value for name, value in event.metadata.items()}
        found.records += int(meta.get("records", 0))
        found.requests += int(meta.get("requests", 0))
        found.http_429 += int(meta.get("http_429", 0))
        found.retries += int(meta.get("retries", 0))


OnProgress = Callable[[BackfillProgress, int, list[str]], None]


class Backfill:
    """The missing days first..last of `asset`, in `runs_at_once` ranged runs, each a child process (they
    share one rate budget), until done, failed or interrupted.

    Each day is reported materialized as it is written, so a failed or
    interrupted run leaves its finished days done; an interrupted run ends
    CANCELED. On a failure no further run starts; those running finish.
    """

    def __init__(self, asset: str, first: str, last: str, spec: ApiSpec, runs_at_once: int = RUNS_AT_ONCE) -> None:
        self.asset, self.instance = asset, dg.DagsterInstance.get()
        all_keys = daily_partitions(spec).get_partition_keys()
        self.wanted = [key for key in all_keys if first <= key <= last]
        done = self.instance.get_materialized_partitions(dg.AssetKey(asset))
        self.missing = [key for key in self.wanted if key not in done]
        self.runs_at_once = max(1, runs_at_once)
        # As many runs as may go at once, each a stretch of the missing days: every run process pays its
        # start-up before the first request, none while others fetch (a start-up mid-backfill leaves the
        # limit idle when the runs before it end together, and its CPU load delays others' sends).
        size = max(1, math.ceil(len(self.missing) / self.runs_at_once))
        self.waiting = [(run[0], run[-1]) for run in stretches(self.missing, all_keys, size)]
        self.started = time.time()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        self.label = f"{asset} {first}..{last}, started {started}"
        self.logs = Path(self.instance.root_directory) / "logs" / "backfills"
        self.running: list[RunProcess] = []
        self.error: str | None = None
        self.tally = Tally(self.instance, asset, set(self.missing), self.started)

    def run(self, on_progress: OnProgress) -> tuple[BackfillProgress, int, str | None]:
        """Run to the end; `on_progress` hears the progress about twice a second, with what the runs said
        meanwhile (retries, 429s, waits). Returns (progress, days wanted, error or "interrupted")."""
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            while self.waiting or self.running:
                said = self._step()
                if self.error is not None and not self.running:
                    break
                on_progress(self.progress(), len(self.wanted), said)
                time.sleep(0.5)
        except KeyboardInterrupt:
            for process in self.running:
                process.cancel(self.instance)
            for process in self.running:
                process.process.wait()
            return self.progress(), len(self.wanted), "interrupted"
        final = self.progress()
        on_progress(final, len(self.wanted), [])
        return final, len(self.wanted), self.error

    def _step(self) -> list[str]:
        """Start runs while there is room (and no failure), reap the finished; return what the runs said."""
        while self.waiting and self.error is None and len(self.running) < self.runs_at_once:
            self.running.append(RunProcess(self.asset, *self.waiting.pop(0), self.label, self.logs))
        finished = [process for process in self.running if process.process.poll() is not None]
        said = [line for process in self.running for line in process.new_events()]
        for process in finished:
            self.running.remove(process)
            self.error = self.error or process.failure()
        return said

    def progress(self) -> BackfillProgress:
        fresh, done_before = self.tally.read(), len(self.wanted) - len(self.missing)
        return replace(fresh, done=fresh.done + done_before, seconds=time.time() - self.started)


def cmd_backfill(args: argparse.Namespace) -> int:
    sources = load_sources()
    api, spec = find_asset(sources, args.asset)
    first, last = check_range(spec, args.first, args.last)
    if problem := missing_token(api, spec):
        print(f"rl-pipeline backfill: {problem}", file=sys.stderr)
        return 1
    use_project_instance()
    console = Console(stderr=True, width=max(Console().width, 120))
    columns = (
        TextColumn(f"[bold]{args.asset}[/] {first}..{last}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar, Picture(sources, api) as picture:
        line = LiveLine(bar, bar.add_task("backfill", total=None, detail=""), console.is_terminal)

        def on_progress(progress: BackfillProgress, wanted: int, said: list[str]) -> None:
            line.show(progress, wanted, said)
            picture.when_due()

        interrupt_on_signals()
        backfill = Backfill(args.asset, first, last, spec, runs_at_once=args.runs or RUNS_AT_ONCE)
        done, wanted, error = backfill.run(on_progress)
    summary(console, args.asset, done, wanted, error)
    if error == "interrupted":
        return 130
    return 1 if error else 0


class Picture:
    """Points of the API's picture (`apis/<api>`) every OBSERVE_EVERY seconds while a backfill runs, and one
    at its end: what the usage sensor observes under the daemon, for a backfill with no daemon."""

    def __init__(self, sources: SourcesFile, api: str) -> None:
        self.instance, self.sources, self.api = dg.DagsterInstance.get(), sources, api
        self.client = api_client(api, sources.apis[api])
        self.due = time.time() + OBSERVE_EVERY

    def when_due(self) -> None:
        if time.time() >= self.due:
            self.observe()

    def observe(self) -> None:
        self.instance.report_runless_asset_event(observe(self.instance, self.sources, self.api, self.client))
        self.due = time.time() + OBSERVE_EVERY

    def __enter__(self) -> Picture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.observe()
        finally:
            self.client.close()
            self.client.store.close()


class LiveLine:
    """The progress bar's detail: records, req/s, ETA, and the latest thing a run said (for a while)."""

    def __init__(self, bar: Progress, task: TaskID, terminal: bool) -> None:
        self.bar, self.task, self.terminal = bar, task, terminal
        self.latest, self.said_at = "", 0.0

    def show(self, progress: BackfillProgress, wanted: int, said: list[str]) -> None:
        if said:
            self.latest, self.said_at = said[-1], time.monotonic()
            if not self.terminal:  # no live line to show them on: a line each, on stdout
                for line in said:
                    print(line, flush=True)
        rate = progress.requests / progress.seconds if progress.seconds else 0.0
        left = progress.eta_seconds(wanted)
        eta = f"ETA {left / 60:.1f} min" if left is not None else "ETA -"
        detail = f"{progress.records} records, {rate:.1f} req/s, {eta}"
        if self.latest and time.monotonic() - self.said_at < QUIET_AFTER:
            detail += f" | {self.latest}"
        self.bar.update(self.task, total=wanted, completed=progress.done, detail=detail)


def summary(console: Console, asset: str, done: BackfillProgress, wanted: int, error: str | None) -> None:
    """The table and "done" on stdout; a failure, one line on stderr."""
    from rich.table import Table

    table = Table("asset", "days done", "records", "requests", "429s", "retries", "seconds")
    out = Console()
    counts = (done.records, done.requests, done.http_429, done.retries)
    table.add_row(asset, f"{done.done}/{wanted}", *map(str, counts), f"{done.seconds:.1f}")
    out.print(table)
    if error is None:
        out.print("done")
        return
    hint = "; run it again to resume (days done stay done)" if rerun_may_help(error) else ""
    console.print(f"rl-pipeline backfill: stopped: {error}{hint}", soft_wrap=True, highlight=False)

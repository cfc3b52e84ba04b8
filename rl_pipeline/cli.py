"""`rl-pipeline`: run the demo, backfill headless, show status, query the warehouse."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rl_pipeline.demo_api.limits import SERVER_ALGORITHMS
from rl_pipeline.demo_api.server import DemoApiConfig, DemoApiServer
from rl_pipeline.locations import DAGSTER_HOME, DEFAULT_STATE_STORE, DEFAULT_WAREHOUSE
from rl_pipeline.pace import describe_pace
from rl_pipeline.quota import iso_time
from rl_pipeline.warehouse import Warehouse, WarehouseError

if TYPE_CHECKING:
    from rich.console import Console

    from rl_pipeline.defs.operations import Progress

DEMO_TOKEN = "demo-token"
DAGSTER_DEV_NOTICE = "ignore:Function `dev_command` is superseded:FutureWarning"  # a -W filter


def _interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, even where a parent shell had
    them ignored; children started afterwards get the default handling back."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def _positive(kind: type) -> object:
    def parse(raw: str) -> float:
        value = kind(raw)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {raw}")
        return value

    return parse


def cmd_demo_api(args: argparse.Namespace) -> int:
    config = DemoApiConfig(
        rate=args.rate,
        period=args.period,
        burst=args.burst,
        algorithm=args.algorithm,
        count_refused=args.count_refused,
        retry_after=args.retry_after,
        limit_headers=args.limit_headers,
        daily_quota=args.daily_quota,
        seed=args.seed,
        token=os.environ.get("RL_DEMO_API_TOKEN", DEMO_TOKEN),
    )
    server = DemoApiServer(config, host=args.host, port=args.port)
    limit = f"{config.algorithm} {config.rate:g} per {config.period:g}s, burst {config.burst}"
    print(f"demo API on {server.url} ({limit})", flush=True)
    _interrupt_on_signals()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo API plus `dagster dev`, both on 127.0.0.1; Ctrl-C stops both."""
    _dagster_home()
    env = os.environ.copy()
    env.setdefault("RL_DEMO_API_TOKEN", DEMO_TOKEN)
    env["RL_DEMO_API_URL"] = f"http://127.0.0.1:{args.api_port}"
    # `dagster dev` warns on every start that `dg dev` supersedes it; `dg` is a separate install this
    # project does not need, so the notice is nothing a user of it can act on.
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), DAGSTER_DEV_NOTICE]))
    _interrupt_on_signals()
    api = subprocess.Popen(
        [sys.executable, "-m", "rl_pipeline.cli", "demo-api", "--host", "127.0.0.1", "--port", str(args.api_port)],
        env=env,
        start_new_session=True,
    )
    dagster = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-m",
            "rl_pipeline.definitions",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
        ],
        env=env,
        start_new_session=True,
    )
    print(f"\nDagster UI: http://127.0.0.1:{args.port}   (Ctrl-C stops everything)\n", flush=True)
    try:
        while api.poll() is None and dagster.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (dagster, api):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in (dagster, api):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return 0


def _dagster_home() -> None:
    """The project's instance (`dagster_home/` of the project root, see `locations`), unless DAGSTER_HOME says
    otherwise; run processes started from here inherit it."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", DAGSTER_HOME))
    home.mkdir(exist_ok=True)


def cmd_backfill(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rl_pipeline.defs import operations
    from rl_pipeline.sources import load_sources

    sources = load_sources()
    api, spec = operations.find_asset(sources, args.asset)
    first, last = operations.check_range(spec, args.first, args.last)
    if spec.token_env and not os.environ.get(spec.token_env):
        print(f"rl-pipeline backfill: API {api} needs its token: set the environment variable {spec.token_env}",
              file=sys.stderr)  # fmt: skip
        return 1
    _dagster_home()
    console = Console(stderr=True, width=max(Console().width, 120))
    columns = (
        TextColumn(f"[bold]{args.asset}[/] {first}..{last}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("backfill", total=None, detail="")
        latest = ("", 0.0)  # what the runs said last, and when

        def show(progress: operations.Progress, wanted: int, said: list[str]) -> None:
            nonlocal latest
            if said:
                latest = (said[-1], time.monotonic())
                if not console.is_terminal:  # no live line to show them on: a line each, on stdout
                    for line in said:
                        print(line, flush=True)
            rate = progress.requests / progress.seconds if progress.seconds else 0.0
            left = operations.eta_seconds(progress, wanted)
            eta = f"ETA {left / 60:.1f} min" if left is not None else "ETA -"
            detail = f"{progress.records} records, {rate:.1f} req/s, {eta}"
            if latest[0] and time.monotonic() - latest[1] < 10:
                detail += f" | {latest[0]}"
            bar.update(task, total=wanted, completed=progress.done, detail=detail)

        _interrupt_on_signals()
        runs = args.runs or operations.RUNS_AT_ONCE
        done, wanted, error = operations.backfill(args.asset, first, last, spec, show, runs_at_once=runs)
    _summary(console, args.asset, done, wanted, error)
    if error == "interrupted":
        return 130
    return 1 if error else 0


def _summary(console: Console, asset: str, done: Progress, wanted: int, error: str | None) -> None:
    """The table and "done" on stdout; a failure, one line on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table("asset", "days done", "records", "requests", "429s", "retries", "seconds")
    out = Console()
    table.add_row(
        asset,
        f"{done.done}/{wanted}",
        str(done.records),
        str(done.requests),
        str(done.http_429),
        str(done.retries),
        f"{done.seconds:.1f}",
    )
    out.print(table)
    if error is None:
        out.print("done")
        return
    from rl_pipeline.defs.operations import rerun_may_help

    hint = "; run it again to resume (days done stay done)" if rerun_may_help(error) else ""
    console.print(f"rl-pipeline backfill: stopped: {error}{hint}", soft_wrap=True, highlight=False)


def cmd_run_chunk(args: argparse.Namespace) -> int:
    from rl_pipeline.defs.operations import run_chunk

    _interrupt_on_signals()
    return run_chunk(args.asset, args.first, args.last, args.run_id, args.label)


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rl_pipeline.defs.operations import status
    from rl_pipeline.defs.resources import RateLimitedApi
    from rl_pipeline.sources import load_sources

    sources = load_sources()
    _dagster_home()
    clients = {  # status needs no token; without one, the budgets (kept per credential) are not shown
        api: RateLimitedApi(api=api, token=os.environ.get(spec.token_env or "")).client()
        for api, spec in sources.apis.items()
        if not spec.token_env or os.environ.get(spec.token_env)
    }
    table = Table("asset", "partitions", "materialized", "failed", "missing", "forecast")
    for row in status(sources, clients):
        table.add_row(
            row.asset, str(row.partitions), str(row.materialized), str(row.failed), str(row.missing), row.forecast
        )
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for api, spec in sources.apis.items():
        client = clients.get(api)
        if client is None:
            console.print(f"quota, circuits and pace of {api}: kept per credential; set {spec.token_env} to see them")
            continue
        if client.quota:
            usage = client.quota.usage()
            left = "unlimited" if usage.left == float("inf") else f"{int(usage.left)} left"
            console.print(
                f"quota {api}: {usage.day_used} used today, {left}; resets at {iso_time(usage.day_resets_at)}"
            )
        print(
            f"circuits {api}: "
            + ", ".join(f"{e}: {client.guard(e).breaker.state().status.value}" for e in client.spec.endpoints)
        )
        print(f"pace {api}: {describe_pace(client.pace)}")
    from rl_pipeline.state import redact_url

    store = redact_url(DEFAULT_STATE_STORE)
    print(f"instance {os.environ['DAGSTER_HOME']}; warehouse {DEFAULT_WAREHOUSE}; state store {store}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    warehouse = Warehouse(args.warehouse, lock_patience=args.wait)
    if not warehouse.path.exists():
        print(f"rl-pipeline: no warehouse at {warehouse.path} yet; materialize an asset first", file=sys.stderr)
        return 2
    try:
        with warehouse.connect(read_only=True) as conn:
            cursor = conn.execute(args.sql)
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(args.limit)
    except (WarehouseError, Exception) as exc:
        print(f"rl-pipeline query: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    table = Table(*names)
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(table)
    return 0


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one clear line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rl-pipeline", description=__doc__)
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="{backfill,status,query,demo,demo-api}"
    )

    backfill = commands.add_parser(
        "backfill", help="materialize a date range through Dagster, headless, with a progress bar"
    )
    backfill.add_argument("--asset", required=True, help="asset name, e.g. events_offset")
    backfill.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--runs", type=_positive_int, metavar="N", help="ranged runs at once (default 4)")
    backfill.set_defaults(func=cmd_backfill)

    chunk = commands.add_parser("_run-chunk")  # one ranged run, in the child process `backfill` starts
    chunk.add_argument("asset")
    chunk.add_argument("first")
    chunk.add_argument("last")
    chunk.add_argument("run_id")
    chunk.add_argument("label")
    chunk.set_defaults(func=cmd_run_chunk)

    state = commands.add_parser("status", help="partitions done, missing and failed; quota and forecast")
    state.set_defaults(func=cmd_status)

    demo = commands.add_parser("demo", help="start the demo API and the Dagster UI")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    demo.add_argument("--api-port", type=int, default=8765, help="demo API port (default 8765)")
    demo.set_defaults(func=cmd_demo)

    api = commands.add_parser("demo-api", help="serve the demo API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8765)
    defaults = DemoApiConfig()
    api.add_argument("--rate", type=_positive(float), default=defaults.rate, help="requests per --period")
    api.add_argument("--period", type=_positive(float), default=defaults.period, help="seconds (default 1)")
    api.add_argument("--burst", type=_positive(int), default=defaults.burst)
    api.add_argument("--algorithm", choices=SERVER_ALGORITHMS, default=defaults.algorithm, help="the server's limit")
    api.add_argument("--count-refused", action="store_true", help="refused requests count against the limit")
    api.add_argument("--no-retry-after", dest="retry_after", action="store_false", help="429s without Retry-After")
    api.add_argument("--no-limit-headers", dest="limit_headers", action="store_false", help="no X-RateLimit-* headers")
    api.add_argument("--daily-quota", type=_positive(int), default=defaults.daily_quota)
    api.add_argument("--seed", type=int, default=defaults.seed)
    api.set_defaults(func=cmd_demo_api)

    query = commands.add_parser("query", help="run read-only SQL on the warehouse")
    query.add_argument("sql")
    query.add_argument("--warehouse", default=DEFAULT_WAREHOUSE)
    query.add_argument("--limit", type=int, default=100, help="rows to print at most")
    query.add_argument("--wait", type=float, default=10.0, help="seconds to wait while a writer holds the file")
    query.set_defaults(func=cmd_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rl_pipeline.defs.operations import UsageError
    from rl_pipeline.sources import SourceFileError

    try:
        return args.func(args)
    except (UsageError, SourceFileError) as exc:
        print(f"rl-pipeline {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

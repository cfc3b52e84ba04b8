"""`rl-pipeline`: run the demo, backfill headless, show status, query the warehouse."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from rl_pipeline.demo_api.limits import SERVER_ALGORITHMS
from rl_pipeline.demo_api.server import DemoApiConfig
from rl_pipeline.errors import SourceFileError, UsageError
from rl_pipeline.locations import DEFAULT_WAREHOUSE


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one clear line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _positive(kind: type[float] | type[int]) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = kind(raw)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {raw}")
        return value

    return parse


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """Each command names its function as `module:function` of `rl_pipeline.cli`, imported only when run: the
    run processes and the demo API do not pay for importing what other commands need."""
    parser = _Parser(prog="rl-pipeline", description=__doc__)
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        metavar="{backfill,check,new-api,status,schema,query,demo,demo-api}",
    )
    backfill = commands.add_parser(
        "backfill", help="materialize a date range through Dagster, headless, with a progress bar"
    )
    backfill.add_argument("--asset", required=True, help="asset name, e.g. events_offset")
    backfill.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--runs", type=_positive_int, metavar="N", help="ranged runs at once (default 4)")
    backfill.set_defaults(run="backfill:cmd_backfill")
    chunk = commands.add_parser("_run-chunk")  # one ranged run, in the child process `backfill` starts
    for name in ("asset", "first", "last", "run_id", "label"):
        chunk.add_argument(name)
    chunk.set_defaults(run="runs:cmd_run_chunk")
    check = commands.add_parser("check", help="fetch a day's first pages; show what the sources file makes of them")
    check.add_argument("--asset", required=True, help="asset name, e.g. events_offset")
    check.add_argument("--day", required=True, metavar="YYYY-MM-DD")
    check.add_argument("--pages", type=_positive_int, default=2, help="pages to fetch at most (default 2)")
    check.set_defaults(run="check:cmd_check")
    _add_new_api(commands.add_parser("new-api", help="describe another API from one real answer of it"))
    commands.add_parser("status", help="partitions done, missing and failed; quota and forecast").set_defaults(
        run="status:cmd_status"
    )
    commands.add_parser("schema", help="print the sources file's JSON schema, for an editor").set_defaults(
        run="schema:cmd_schema"
    )
    demo = commands.add_parser("demo", help="start the demo API and the Dagster UI")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    demo.add_argument("--api-port", type=int, default=8765, help="demo API port (default 8765)")
    demo.set_defaults(run="demo:cmd_demo")
    _add_demo_api(commands.add_parser("demo-api", help="serve the demo API"))
    _add_query(commands.add_parser("query", help="run read-only SQL on the warehouse"))
    return parser


def _add_query(query: argparse.ArgumentParser) -> None:
    query.add_argument("sql")
    query.add_argument("--warehouse", default=DEFAULT_WAREHOUSE)
    query.add_argument("--limit", type=int, default=100, help="rows to print at most")
    query.add_argument("--wait", type=float, default=10.0, help="seconds to wait while a writer holds the file")
    query.set_defaults(run="query:cmd_query")


def _add_new_api(new_api: argparse.ArgumentParser) -> None:
    new_api.add_argument("name", help="the API's name in the sources file, e.g. shop")
    new_api.add_argument(
        "--url", required=True, help="one day's first page, e.g. 'https://host/v1/events?date=2024-01-01'"
    )
    new_api.add_argument("--token-env", metavar="VAR", help="the environment variable that holds its bearer token")
    new_api.add_argument("--file", help="the sources file to add it to (default $RL_SOURCES_FILE, else ./sources.yaml)")
    new_api.set_defaults(run="new_api:cmd_new_api")


def _add_demo_api(api: argparse.ArgumentParser) -> None:
    """The demo API's flags, their defaults those of `DemoApiConfig`."""
    defaults = DemoApiConfig()
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8765)
    api.add_argument("--rate", type=_positive(float), default=defaults.rate, help="requests per --period")
    api.add_argument("--period", type=_positive(float), default=defaults.period, help="seconds (default 1)")
    api.add_argument("--burst", type=_positive(int), default=defaults.burst)
    api.add_argument("--algorithm", choices=SERVER_ALGORITHMS, default=defaults.algorithm, help="the server's limit")
    api.add_argument("--count-refused", action="store_true", help="refused requests count against the limit")
    api.add_argument("--no-retry-after", dest="retry_after", action="store_false", help="429s without Retry-After")
    api.add_argument("--no-limit-headers", dest="limit_headers", action="store_false", help="no X-RateLimit-* headers")
    api.add_argument(
        "--limit-status", type=int, choices=(429, 403), default=defaults.limit_status, help="a refused request's status"
    )
    api.add_argument("--daily-quota", type=_positive(int), default=defaults.daily_quota)
    api.add_argument("--seed", type=int, default=defaults.seed)
    api.set_defaults(run="demo:cmd_demo_api")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, _, function = args.run.partition(":")
    command = getattr(importlib.import_module(f"rl_pipeline.cli.{module}"), function)
    try:
        return command(args)
    except (UsageError, SourceFileError) as exc:
        print(f"rl-pipeline {args.command}: {exc}", file=sys.stderr)
        return 2

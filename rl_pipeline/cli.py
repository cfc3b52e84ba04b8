"""`rl-pipeline`: run the demo, serve the demo API, query the warehouse."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rl_pipeline.defs.resources import DEFAULT_WAREHOUSE
from rl_pipeline.demo_api.server import DemoApiConfig, DemoApiServer
from rl_pipeline.warehouse import Warehouse, WarehouseError

DEMO_TOKEN = "demo-token"


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
        burst=args.burst,
        daily_quota=args.daily_quota,
        seed=args.seed,
        token=os.environ.get("RL_DEMO_API_TOKEN", DEMO_TOKEN),
    )
    server = DemoApiServer(config, host=args.host, port=args.port)
    print(f"demo API on {server.url} ({config.rate:g} req/s, burst {config.burst})", flush=True)
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
    root = Path.cwd()
    env = os.environ.copy()
    env.setdefault("RL_DEMO_API_TOKEN", DEMO_TOKEN)
    env["RL_DEMO_API_URL"] = f"http://127.0.0.1:{args.api_port}"
    env.setdefault("DAGSTER_HOME", str(root / "dagster_home"))
    Path(env["DAGSTER_HOME"]).mkdir(exist_ok=True)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rl-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="start the demo API and the Dagster UI")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    demo.add_argument("--api-port", type=int, default=8765, help="demo API port (default 8765)")
    demo.set_defaults(func=cmd_demo)

    api = commands.add_parser("demo-api", help="serve the demo API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8765)
    api.add_argument("--rate", type=_positive(float), default=20.0, help="requests per second")
    api.add_argument("--burst", type=_positive(int), default=20)
    api.add_argument("--daily-quota", type=_positive(int), default=50_000)
    api.add_argument("--seed", type=int, default=42)
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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

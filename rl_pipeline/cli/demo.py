"""`rl-pipeline demo-api` (the demo API alone) and `rl-pipeline demo` (it, plus `dagster dev`)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from rl_pipeline.cli.environment import interrupt_on_signals, use_project_instance
from rl_pipeline.demo_api.server import DemoApiConfig, DemoApiServer

DEMO_TOKEN = "demo-token"
DAGSTER_DEV_NOTICE = "ignore:Function `dev_command` is superseded:FutureWarning"  # a -W filter


def cmd_demo_api(args: argparse.Namespace) -> int:
    options = ("rate", "period", "burst", "algorithm", "count_refused", "retry_after", "limit_headers", "limit_status")
    config = DemoApiConfig(
        **{name: getattr(args, name) for name in (*options, "daily_quota", "seed")},
        token=os.environ.get("RL_DEMO_API_TOKEN", DEMO_TOKEN),
    )
    server = DemoApiServer(config, host=args.host, port=args.port)
    limit = f"{config.algorithm} {config.rate:g} per {config.period:g}s, burst {config.burst}"
    print(f"demo API on {server.url} ({limit})", flush=True)
    interrupt_on_signals()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo API plus `dagster dev`, both on 127.0.0.1; Ctrl-C stops both."""
    use_project_instance()
    env = os.environ.copy()
    env.setdefault("RL_DEMO_API_TOKEN", DEMO_TOKEN)
    env["RL_DEMO_API_URL"] = f"http://127.0.0.1:{args.api_port}"
    # `dagster dev` warns on every start that `dg dev` supersedes it; `dg` is a separate install this
    # project does not need, so the notice is nothing a user of it can act on.
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), DAGSTER_DEV_NOTICE]))
    interrupt_on_signals()
    api = ["rl_pipeline.cli", "demo-api", "--host", "127.0.0.1", "--port", str(args.api_port)]
    dagster = ["dagster", "dev", "-m", "rl_pipeline.definitions", "--host", "127.0.0.1", "--port", str(args.port)]
    processes = [
        subprocess.Popen([sys.executable, "-m", *command], env=env, start_new_session=True)
        for command in (api, dagster)
    ]
    print(f"\nDagster UI: http://127.0.0.1:{args.port}   (Ctrl-C stops everything)\n", flush=True)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(processes[::-1])
    return 0


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Interrupt each process group, then wait for it (30 s at most, then kill it)."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

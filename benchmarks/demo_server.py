"""The demo API in a process of its own, as the benchmarks run it (the client's process stays the client's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

TOKEN = "bench-token"


@contextmanager
def demo_api(rate: float, burst: int, daily_quota: int = 10_000_000) -> Iterator[str]:
    """Start the demo API on a free port with this limit; yields its URL once it answers.

    RL_DEMO_API_URL and RL_DEMO_API_TOKEN are set in this process (and so in its children) meanwhile.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in ("RL_DEMO_API_URL", "RL_DEMO_API_TOKEN")}
    os.environ.update(RL_DEMO_API_URL=url, RL_DEMO_API_TOKEN=TOKEN)
    server = subprocess.Popen(
        [sys.executable, "-m", "rl_pipeline.cli", "demo-api", "--port", str(port), "--rate", str(rate),
         "--burst", str(burst), "--daily-quota", str(daily_quota)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                requests.get(f"{url}/_admin/stats", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

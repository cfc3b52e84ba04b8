"""Fixtures: the demo API on a real socket, real DuckDB and SQLite files, every state store."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rl_pipeline.demo_api import DemoApiConfig, DemoApiServer
from rl_pipeline.state import StateStore, open_store
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import TOKEN, free_port, required


@pytest.fixture
def make_demo_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DemoApiServer]]:
    """Start demo APIs with chosen settings; the latest one is what the sources file points at."""
    servers: list[DemoApiServer] = []

    def start(**config: Any) -> DemoApiServer:
        server = DemoApiServer(DemoApiConfig(**{"token": TOKEN, "rate": 200, "burst": 50, **config})).start()
        servers.append(server)
        monkeypatch.setenv("RL_DEMO_API_URL", server.url)
        monkeypatch.setenv("RL_DEMO_API_TOKEN", TOKEN)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def demo_api(make_demo_api: Callable[..., DemoApiServer]) -> DemoApiServer:
    return make_demo_api()


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.sqlite"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A reachable Redis: $RL_REDIS_URL (default the local one), else a `redis-server`
    from PATH on a free port. Skipped when neither exists, unless RL_REQUIRE_REDIS=1."""
    import redis

    url = os.environ.get("RL_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        yield url
        return
    except redis.RedisError:
        pass
    binary = shutil.which("redis-server")
    if binary is None:
        if required("REDIS"):
            pytest.fail(f"RL_REQUIRE_REDIS=1 but no Redis at {url} and no redis-server on PATH")
        pytest.skip(f"no Redis at {url} and no redis-server on PATH")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait()


STORE_KINDS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """The same tests against every state store."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/state.sqlite"
    else:
        url = request.getfixturevalue("redis_url")
    opened = open_store(url)
    yield opened
    opened.close()


@pytest.fixture
def namespace() -> str:
    """A fresh limiter namespace, so tests sharing one Redis never share state."""
    return f"test-{uuid.uuid4().hex[:12]}"

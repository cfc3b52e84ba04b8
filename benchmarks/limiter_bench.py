"""Shared rate budget across processes: our stores against two peers, side by side.

    .venv/bin/python benchmarks/limiter_bench.py [--seconds 10] [--processes 4] [--rate 20]

Against the demo API (a real server on loopback, limit RATE req/s with burst
RATE, no rate-limit headers, so nothing can be learned and only the shared
budget keeps the client under the limit), PROCESSES processes send as fast
as their limiter lets them for SECONDS. Variants:

- rl_pipeline with the sqlite store and with the redis store (one budget);
- naive: a private in-process token bucket per process (rl_pipeline's memory store);
- pyrate-limiter's SQLiteBucket with a file lock (its multi-process setup).

Printed per variant: steady-state aggregate rate / allowed rate (server-side,
after the first second), the most requests in any sliding 1 s window, 429s,
and the acquire overhead p50/p99 (a single process, a limit that never waits).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests
from rich.console import Console
from rich.table import Table

from rl_pipeline.demo_api import DemoApiConfig, DemoApiServer
from rl_pipeline.demo_api.server import most_in_any_window
from rl_pipeline.limiter import RateLimiter
from rl_pipeline.sources import RateLimitSpec
from rl_pipeline.state import open_store

TOKEN = "bench-token"
VARIANTS = ["rl_pipeline sqlite", "rl_pipeline redis", "naive per-process bucket", "pyrate-limiter SQLiteBucket"]


def make_acquire(variant: str, rate: float, burst: float, state_dir: str, redis_url: str, namespace: str):
    """A blocking acquire() for the variant."""
    if variant.startswith("pyrate"):
        from pyrate_limiter import Duration, Limiter, Rate, SQLiteBucket

        bucket = SQLiteBucket.init_from_file(
            [Rate(int(rate), Duration.SECOND)], db_path=f"{state_dir}/pyrate.sqlite", use_file_lock=True
        )
        limiter = Limiter(bucket)
        return lambda: limiter.try_acquire("bench", blocking=True)
    url = {
        "rl_pipeline sqlite": f"sqlite:///{state_dir}/state.sqlite",
        "rl_pipeline redis": redis_url,
        "naive per-process bucket": "memory://",
    }[variant]
    # As the client builds it from the sources file, jitter tolerance included (see RateLimitSpec).
    limit = RateLimitSpec(rate=rate, burst=burst).to_limit()
    limiter = RateLimiter(open_store(url), {"api": limit}, namespace=namespace)
    return limiter.acquire


def worker(args: argparse.Namespace) -> None:
    acquire = make_acquire(args.variant, args.rate, args.rate, args.state_dir, args.redis_url, args.namespace)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    url = f"{args.url}/v1/offset/events"
    end = args.start + args.seconds
    sent = 0
    while time.time() < end:
        acquire()
        if time.time() >= end:
            break
        session.get(url, params={"date": "2024-01-09", "limit": 1}, timeout=10)
        sent += 1
    print(json.dumps({"sent": sent}))


def overhead_us(variant: str, state_dir: str, redis_url: str, n: int = 20000) -> tuple[float, float]:
    acquire = make_acquire(variant, 1e9, 1e9, state_dir, redis_url, f"overhead-{os.getpid()}-{time.time()}")
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        acquire()
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * len(samples))]


def run_variant(variant: str, server: DemoApiServer, args: argparse.Namespace) -> dict:
    server.api.reset()
    with tempfile.TemporaryDirectory() as state_dir:
        if variant.endswith("redis"):
            import redis

            redis.Redis.from_url(args.redis_url).flushdb()
        start = time.time() + 1.5  # all processes start together, after their imports
        namespace = f"bench-{time.time()}"
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", "--variant", variant, "--url", server.url,
                 "--state-dir", state_dir, "--redis-url", args.redis_url, "--namespace", namespace,
                 "--rate", str(args.rate), "--seconds", str(args.seconds), "--start", str(start)],
                stdout=subprocess.PIPE, text=True,
            )
            for _ in range(args.processes)
        ]  # fmt: skip
        for p in procs:
            p.communicate(timeout=args.seconds + 60)
        log = server.api.stats()["requests"]
    with tempfile.TemporaryDirectory() as state_dir:
        p50, p99 = overhead_us(variant, state_dir, args.redis_url)
    times = [t for t, _, _ in log]
    t0 = min(times)
    steady = [t for t, status, _ in log if status == 200 and t0 + 1 <= t < t0 + args.seconds]
    return {
        "variant": variant,
        "rate_ratio": len(steady) / ((args.seconds - 1) * args.rate),
        "max_1s": most_in_any_window(times),
        "429s": sum(1 for _, status, _ in log if status == 429),
        "requests": len(log),
        "p50_us": p50,
        "p99_us": p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--redis-url", default=os.environ.get("RL_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--variant", "--url", "--state-dir", "--namespace"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    config = DemoApiConfig(rate=args.rate, burst=int(args.rate), token=TOKEN, limit_headers=False)
    with DemoApiServer(config) as server:
        rows = [run_variant(variant, server, args) for variant in VARIANTS]
    table = Table(
        "variant", "rate / allowed", "max in any 1 s", "429s", "requests", "acquire p50 µs", "acquire p99 µs",
        title=(
            f"{args.processes} processes, one {args.rate:g} req/s limit (burst {args.rate:g}), {args.seconds:g} s, "
            f"demo API on loopback, {os.cpu_count()} cores"
        ),
        caption=f"goals: rate / allowed >= 0.97, max in any 1 s <= {2 * args.rate:g} (limit + burst), 0 429s",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["variant"], f"{r['rate_ratio']:.3f}", str(r["max_1s"]), str(r["429s"]), str(r["requests"]),
            f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}",
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

"""What a sliding-window log's size costs per decision, against a sliding-window counter (the baseline).

    .venv/bin/python benchmarks/log_size_bench.py [--entries 100 1000 3000] [--decisions 300]

A log keeps one entry per request in its window, and every decision reads and
rewrites them all; a counter keeps two numbers. For each size, the log is
filled to ENTRIES (a window that never slides: rate = ENTRIES per day), then
DECISIONS denied decisions are timed, on the SQLite and Redis stores. Why the
sources file refuses a log above 1000 entries (`MAX_LOG_ENTRIES`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from rich.console import Console
from rich.table import Table

from rl_pipeline.clock import FakeClock
from rl_pipeline.limiter import RateLimiter
from rl_pipeline.limits import Algorithm, Limit
from rl_pipeline.state import open_store


def per_decision_ms(url: str, algorithm: Algorithm, entries: int, decisions: int) -> float:
    clock = FakeClock()
    limiter = RateLimiter(
        open_store(url),
        {"day": Limit(rate=entries, period=86_400, algorithm=algorithm)},
        namespace=f"bench-{algorithm}-{entries}-{time.time_ns()}",
        clock=clock,
    )
    for _ in range(entries):
        assert limiter.try_acquire()
        clock.advance(0.001)
    started = time.perf_counter()
    for _ in range(decisions):
        assert not limiter.try_acquire()
    return (time.perf_counter() - started) / decisions * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--redis-url", default=os.environ.get("RL_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    table = Table("store", "entries", "counter ms", "log ms", "log / counter")
    with tempfile.TemporaryDirectory() as tmp:
        for store, url in (("sqlite", f"sqlite:///{tmp}/s.sqlite"), ("redis", args.redis_url)):
            for entries in args.entries:
                counter = per_decision_ms(url, Algorithm.SLIDING_WINDOW_COUNTER, entries, args.decisions)
                log = per_decision_ms(url, Algorithm.SLIDING_WINDOW_LOG, entries, args.decisions)
                table.add_row(store, str(entries), f"{counter:.3f}", f"{log:.3f}", f"{log / counter:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()

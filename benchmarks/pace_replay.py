"""The learned pace against the demo API's own limits, on a fake clock: the server-truth matrix in seconds.

`server_truth_bench.py` runs each cell for real (a year, 4 runs at once, ~80 s a
cell), and one cell moves by several percent from run to run with the phase its
first storm catches. This replays the same cells with the wall clock taken out:
`workers` `LearnedPace` instances share one memory store (as the workers of 4
runs share the state store), grants go out at the pace one at a time, a 429
pauses every worker, each request reaches the server (the demo API's
`ServerLimit`, from several starting phases of its window) `latency` seconds
after its grant, and up to `jitter` more at random (a sender's thread that ran
late), and each answer comes back `latency` seconds after that. It prints the successes against what the server allows
(1.0: every request the limit allows), so a change to `pace.py` can be told from
the cells' spread in seconds. The files are `server_truth_bench.py`'s own.

    .venv/bin/python benchmarks/pace_replay.py [--seconds 60] [--phases 8] [--servers ...] [--files ...]

To compare with another commit, run it with PYTHONPATH pointing at that
commit's worktree: the baseline is the same script on the other code.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random

import yaml
from rich.console import Console
from rich.table import Table
from server_truth_bench import FILES, MATRIX, MATRIX_FILES, SERVERS, algorithm_of, sources_for

from rl_pipeline.clock import FakeClock
from rl_pipeline.demo_api.limits import ServerLimit
from rl_pipeline.pace import LearnedPace, PacePolicy
from rl_pipeline.sources import SHIPPED_SOURCES, SourcesFile
from rl_pipeline.state import open_store


def policy_for(server: str, kind: str) -> PacePolicy:
    """The pace policy the CLI would build from the sources file `server_truth_bench.py` writes."""
    sources = yaml.safe_load(SHIPPED_SOURCES.read_text())
    sources["apis"]["demo"].update(sources_for(server, kind))
    return SourcesFile.model_validate(sources).apis["demo"].pace_policy()


class Replay:
    """One cell from one starting phase of the server's window."""

    def __init__(
        self, server: str, policy: PacePolicy, phase: float, workers: int, latency: float, jitter: float
    ) -> None:
        config = SERVERS[server]
        self.clock, self.latency, self.jitter = FakeClock(1_700_000_000.0 + phase), latency, jitter
        self.rng = random.Random(phase)
        store = open_store("memory://")
        self.paces = [LearnedPace(store, "pace", policy, self.clock) for _ in range(workers)]
        self.limit = ServerLimit(algorithm_of(server), config["rate"], config["period"], config["burst"],
                                 "--count-refused" in config["flags"], self.clock.now())  # fmt: skip
        self.retry_after = "--no-retry-after" not in config["flags"]
        self.free, self.order = list(range(workers)), itertools.count()
        self.events: list[tuple[float, int, str, int, float]] = []  # (when, order, what, worker, server's wait)
        self.next_grant = self.paused_until = self.clock.now()
        self.successes = self.refusals = 0

    def run(self, seconds: float) -> tuple[int, int]:
        """Successes and 429s in `seconds`."""
        began = self.clock.now()
        self._schedule(began)
        while self.events and self.events[0][0] - began < seconds:
            now, _, what, worker, wait = heapq.heappop(self.events)
            self.clock.advance(now - self.clock.now())
            if what == "grant":
                self._grant(now)
            else:
                self._answer(now, what == "200", worker, wait)
            self._schedule(now)
        return self.successes, self.refusals

    def _schedule(self, now: float) -> None:
        """The next grant, when a worker is free to take it (one grant is due at a time)."""
        if self.free and not any(what == "grant" for _, _, what, _, _ in self.events):
            due = max(now, self.paused_until, self.next_grant)
            heapq.heappush(self.events, (due, next(self.order), "grant", -1, 0.0))

    def _grant(self, now: float) -> None:
        if now < max(self.paused_until, self.next_grant):  # a pause came while this grant was due
            return
        for other in self.free[1:]:
            self.paces[other].rate()  # the waiting workers ask the pace as they wake for the grant
        worker = self.free.pop(0)
        self.next_grant = now + 1 / self.paces[worker].rate()
        admitted, wait = self.limit.admit(now + self.latency + self.rng.uniform(0, self.jitter))
        answer = (now + 2 * self.latency, next(self.order), "200" if admitted else "429", worker, wait)
        heapq.heappush(self.events, answer)

    def _answer(self, now: float, admitted: bool, worker: int, wait: float) -> None:
        self.free.append(worker)
        if admitted:
            self.successes += 1
            self.paces[worker].on_success()
            return
        self.refusals += 1
        told = max(1, math.ceil(wait)) if self.retry_after else None  # the demo API's Retry-After
        pause = max(self.paces[worker].on_refused(told).pause, told or 0)
        self.paused_until = max(self.paused_until, now + pause)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="60: about a year of the matrix's days")
    parser.add_argument("--phases", type=int, default=8, help="starting phases of the server's window")
    parser.add_argument("--workers", type=int, default=16, help="16: 4 runs of 4 workers")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds each way")
    parser.add_argument("--jitter", type=float, default=0.0, help="seconds a request may reach the server late")
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(MATRIX))
    parser.add_argument("--files", nargs="+", choices=FILES, default=list(MATRIX_FILES))
    args = parser.parse_args()
    title = (
        f"{args.seconds:g} s on a fake clock, {args.phases} phases, {args.workers} workers, jitter {args.jitter:g} s"
    )
    table = Table("server", "sources file", "successes", "429s", "429 share", "of what it allows", "worst phase",
                  title=title)  # fmt: skip
    for server in args.servers:
        period = SERVERS[server]["period"]
        allowed = args.seconds * SERVERS[server]["rate"] / period
        for kind in args.files:
            policy = policy_for(server, kind)
            phases = [period * i / args.phases for i in range(args.phases)]
            cells = [
                Replay(server, policy, p, args.workers, args.latency, args.jitter).run(args.seconds) for p in phases
            ]
            ok, refused = sum(c[0] for c in cells), sum(c[1] for c in cells)
            worst = min(c[0] for c in cells) / allowed
            table.add_row(server, kind, str(ok), str(refused), f"{refused / (ok + refused):.2%}",
                          f"{ok / (allowed * args.phases):.3f}", f"{worst:.3f}")  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

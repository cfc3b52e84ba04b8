"""What a run tells its user while it waits, one line per kind of event at most every few seconds.

A storm of 429s from sixteen workers, or a retry every second through an
outage, must read as one line with a count, not hundreds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rl_pipeline.clock import SYSTEM_CLOCK, Clock

EventSink = Callable[[str, str], None]  # (kind, message): what the client and its guard report

# Every line a run tells its user also goes here: the CLI's run processes send it to the CLI's status line.
LOGGER = logging.getLogger("rl_pipeline.events")


def ignore(kind: str, message: str) -> None:
    """The sink of a client nobody watches."""


def to_user(run_log: Callable[[str], None]) -> Callable[[str], None]:
    """A sink that writes to the run's log (the Dagster UI) and to LOGGER (the CLI)."""

    def tell(message: str) -> None:
        run_log(message)
        LOGGER.info(message)

    return tell


class Throttled:
    """Passes events on to `sink`, at most one per kind every `every` seconds.

    An event held back is counted, and the next line of its kind says how
    many like it came meanwhile. Thread-safe: every worker of a run shares one.
    """

    def __init__(self, sink: Callable[[str], None], every: float = 5.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.sink, self.every, self.clock = sink, every, clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, kind: str, message: str) -> None:
        now = self.clock.now()
        with self._lock:
            if now - self._last.get(kind, -self.every) < self.every:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        self.sink(message + (f" (+{held} more like it in the last {self.every:g}s)" if held else ""))

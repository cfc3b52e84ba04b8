"""What a run tells its user while it waits, one line per kind of event at most every few seconds.

A storm of 429s from sixteen workers, or a retry every second through an
outage, must read as one line with a count, not hundreds.
"""

from __future__ import annotations

import logging
import math
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
    """Passes events on to `sink`, at most one per kind every `every` seconds, and loses none.

    Events held back are counted, and the latest of them is kept: when the
    kind's `every` seconds are up it goes out, saying how many like it came
    meanwhile (the last 429 of a storm sets the pace and the pause the run goes
    on with; nobody should wait on a line that never comes). One that comes
    later carries the count instead. `close` sends whatever is held at once.
    Thread-safe: every worker of a run shares one.
    """

    def __init__(self, sink: Callable[[str], None], every: float = 5.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.sink, self.every, self.clock = sink, every, clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, tuple[int, str]] = {}  # kind -> (how many held back, the latest of them)
        self._timers: dict[str, threading.Timer] = {}

    def __call__(self, kind: str, message: str) -> None:
        now = self.clock.now()
        with self._lock:
            due = self._last.get(kind, -math.inf) + self.every
            if now < due:
                self._held[kind] = (self._held.get(kind, (0, ""))[0] + 1, message)
                if kind not in self._timers:
                    self._timers[kind] = timer = threading.Timer(due - now, self._release, (kind,))
                    timer.daemon = True
                    timer.start()
                return
            self._last[kind] = now
            held, _ = self._held.pop(kind, (0, ""))
            self._cancel(kind)
        self._send(message, held)

    def close(self) -> None:
        """Send every event held back now: the run is ending."""
        with self._lock:
            kinds = list(self._held)
            for kind in list(self._timers):
                self._cancel(kind)
        for kind in kinds:
            self._release(kind)

    def _release(self, kind: str) -> None:
        """The latest event of `kind` held back, with the count of the others."""
        with self._lock:
            self._timers.pop(kind, None)
            if kind not in self._held:
                return
            count, message = self._held.pop(kind)
            self._last[kind] = self.clock.now()
        self._send(message, count - 1)

    def _cancel(self, kind: str) -> None:
        timer = self._timers.pop(kind, None)
        if timer is not None:
            timer.cancel()

    def _send(self, message: str, others: int) -> None:
        self.sink(message + (f" (+{others} more like it in the last {self.every:g}s)" if others else ""))

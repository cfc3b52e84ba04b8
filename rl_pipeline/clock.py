"""Time as an object, so every limiter, retry and breaker can be tested exactly.

`now()` is wall-clock epoch seconds rather than a monotonic reading: limiter
state is shared between processes (and machines), and only wall time means
the same thing in all of them.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


def iso_time(epoch: float) -> str:
    """Epoch seconds as `2026-01-01T00:00:00Z`."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def in_words(seconds: float) -> str:
    """A duration as a person reads it: `40 s`, `12 min`, `3.4 h`, `2.5 days`."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: `time.time()` and `time.sleep()`."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to; `sleep` advances it instantly.

    Thread-safe, so code that sleeps in several threads stays deterministic in
    the total time it advances.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class ReadClock:
    """`clock`, remembering per thread the last instant it gave: handed to a store, which reads the clock
    inside its lock, it tells when the store decided."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._last = threading.local()

    def now(self) -> float:
        self._last.value = self.clock.now()
        return self._last.value

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    @property
    def last(self) -> float:
        """The instant this thread was last given."""
        return self._last.value


SYSTEM_CLOCK = SystemClock()

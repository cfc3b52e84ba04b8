"""State in this process only: for tests, notebooks and single-process runs."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from rl_pipeline.limits.algorithms import Limit
from rl_pipeline.state.base import StateStore, decide_all


class MemoryStore(StateStore):
    """Atomic under a lock; shared by the threads of one process, no further."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._limits: dict[str, list[float]] = {}
        self._values: dict[str, str] = {}
        self._pauses: dict[str, float] = {}

    def acquire(
        self,
        limits: Sequence[tuple[str, Limit]],
        cost: float,
        now: float,
        *,
        pause_key: str | None = None,
        dry_run: bool = False,
    ) -> float:
        keys = [key for key, _ in limits]
        with self._lock:
            paused_until = self._pauses.get(pause_key) if pause_key else None
            states = [self._limits.get(k) for k in keys]
            wait, states = decide_all(states, [lim for _, lim in limits], now, cost, paused_until)
            if states is not None and not dry_run:
                self._limits.update(zip(keys, states, strict=True))
        return wait

    def pause(self, key: str, until: float) -> None:
        with self._lock:
            self._pauses[key] = max(until, self._pauses.get(key, until))

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._values.get(key)

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._values[key] = value

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)

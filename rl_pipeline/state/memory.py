"""State in this process only: for tests, notebooks and single-process runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from rl_pipeline.clock import Clock
from rl_pipeline.limits.algorithms import Limit
from rl_pipeline.limits.budget import Budget, decide_budget, paused_budget
from rl_pipeline.state.base import StateStore, T


class MemoryStore(StateStore):
    """Atomic under a lock; shared by the threads of one process, no further."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._budgets: dict[str, Budget] = {}
        self._values: dict[str, str] = {}

    def acquire(
        self, namespace: str, limits: Sequence[tuple[str, Limit]], cost: float, clock: Clock, *, dry_run: bool = False
    ) -> float:
        with self._lock:
            budget = self._budgets.setdefault(namespace, {})
            wait, new_states = decide_budget(budget, limits, clock.now(), cost)
            if new_states is not None and not dry_run:
                budget.update(new_states)
        return wait

    def pause(self, namespace: str, until: float) -> None:
        with self._lock:
            self._budgets[namespace] = paused_budget(self._budgets.get(namespace, {}), until)

    def update(self, key: str, fn: Callable[[str | None], tuple[str | None, T]]) -> T:
        with self._lock:
            value, verdict = fn(self._values.get(key))
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value
            return verdict

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._values.get(key)

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._values[key] = value

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)

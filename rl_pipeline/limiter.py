"""The limiter every request passes through."""

from __future__ import annotations

from collections.abc import Mapping

from rl_pipeline.clock import SYSTEM_CLOCK, Clock
from rl_pipeline.errors import RateLimitTimeout
from rl_pipeline.limits.algorithms import Limit
from rl_pipeline.state import StateStore


class RateLimiter:
    """Grants requests against named limits kept in a shared store.

    Every limit is charged together or not at all, so a denial by one (say
    the per-minute limit) takes nothing from the others. Workers in any thread,
    process or machine that use the same store and `namespace` share one budget.
    """

    def __init__(
        self,
        store: StateStore,
        limits: Mapping[str, Limit],
        *,
        namespace: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not limits:
            raise ValueError("a rate limiter needs at least one limit")
        self.store = store
        self.clock = clock
        self.namespace = namespace
        self.limits: dict[str, Limit] = {}
        self._named: list[tuple[str, Limit]] = []
        for name, limit in limits.items():
            self.set_limit(name, limit)

    def set_limit(self, name: str, limit: Limit) -> None:
        """Add or change a limit (say, a learned rate); its state carries over while its algorithm and
        period stay the same (the state is stored under them: state of another shape starts afresh)."""
        self.limits[name] = limit
        self._named = [(f"{n}@{lim.algorithm.value}/{lim.period:g}s", lim) for n, lim in self.limits.items()]

    def _check_cost(self, cost: float) -> None:
        for name, limit in self.limits.items():
            if cost > limit.capacity:
                raise ValueError(
                    f"cost {cost} exceeds the capacity {limit.capacity} of limit {name!r}: never grantable"
                )

    def pause(self, seconds: float) -> None:
        """Hold back every worker sharing this budget for `seconds` (e.g. the
        server's Retry-After): one worker's 429 keeps all the others quiet."""
        if seconds > 0:
            self.store.pause(self.namespace, self.clock.now() + seconds)

    def attempt(self, cost: float = 1) -> float:
        """Take `cost` now if every limit allows it and return 0.0; else take nothing and return
        the seconds until it could be granted. Never waits."""
        self._check_cost(cost)
        return self.store.acquire(self.namespace, self._named, cost, self.clock)

    def try_acquire(self, cost: float = 1) -> bool:
        """Take `cost` now if every limit allows it; never waits."""
        return self.attempt(cost) == 0.0

    def wait_time(self, cost: float = 1) -> float:
        """Seconds until `cost` could be granted, if nobody else takes it first."""
        self._check_cost(cost)
        return self.store.acquire(self.namespace, self._named, cost, self.clock, dry_run=True)

    def acquire(self, cost: float = 1, timeout: float | None = None) -> float:
        """Block until `cost` is granted; return the seconds spent waiting.

        Raises RateLimitTimeout, without taking anything, when the grant would
        come later than `timeout` seconds from now.
        """
        start = self.clock.now()
        while True:
            now = self.clock.now()
            wait = self.attempt(cost)
            if wait == 0.0:
                return now - start
            if timeout is not None and now + wait - start > timeout:
                raise RateLimitTimeout(
                    f"rate limit {', '.join(self.limits)}: no grant within {timeout:g}s (next in {wait:.3f}s)"
                )
            self.clock.sleep(wait)

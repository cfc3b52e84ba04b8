"""A rate nobody published, found by additive increase / multiplicative decrease.

Like TCP's congestion window: every success adds `increase / rate`, so the
rate climbs by about `increase` requests/s each second; a 429 multiplies it by
`decrease`, at most once per `cooldown` (the requests already in flight at the
old rate will be refused too, and must not halve it again). The learned rate
lives in the state store, so every worker shares it and the next run starts
where this one ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rl_pipeline.clock import SYSTEM_CLOCK, Clock
from rl_pipeline.state.base import StateStore


@dataclass(frozen=True)
class AimdPolicy:
    initial_rate: float
    min_rate: float
    max_rate: float
    increase: float = 1.0  # requests/s gained per second without a 429
    decrease: float = 0.5  # factor applied on a 429
    cooldown: float = 1.0  # seconds after a decrease during which 429s don't decrease again


class AdaptiveRate:
    """The shared, learned rate of one API + credential."""

    def __init__(self, store: StateStore, key: str, policy: AimdPolicy, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store, self.key, self.policy, self.clock = store, key, policy, clock

    def _decode(self, raw: str | None) -> tuple[float, float]:
        if raw is None:
            return self.policy.initial_rate, 0.0
        rate, decreased_at = raw.split(",")
        return float(rate), float(decreased_at)

    def _change(self, step: Callable[[float, float], tuple[float, float]]) -> float:
        def apply(raw: str | None) -> str:
            rate, decreased_at = step(*self._decode(raw))
            rate = min(self.policy.max_rate, max(self.policy.min_rate, rate))
            return f"{rate!r},{decreased_at!r}"

        return self._decode(self.store.update(self.key, apply))[0]

    def current(self) -> float:
        return self._decode(self.store.get(self.key))[0]

    def on_success(self) -> float:
        return self._change(lambda rate, decreased_at: (rate + self.policy.increase / rate, decreased_at))

    def on_throttled(self) -> float:
        now = self.clock.now()

        def halve(rate: float, decreased_at: float) -> tuple[float, float]:
            if now - decreased_at < self.policy.cooldown:
                return rate, decreased_at
            return rate * self.policy.decrease, now

        return self._change(halve)

"""Rate-limit algorithms as pure decisions over a small state.

Every algorithm is a function `(state, limit, now, cost) -> Verdict`. The state
is a short list of floats, so any store can keep it: a dict in memory, a row in
SQLite, a key in Redis (where `redis_store.lua` mirrors this file line for
line). Nothing here reads a clock or sleeps.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

# A time tolerance in seconds. Epoch seconds as floats round to ~0.24 µs, so
# a wait computed here and slept might land just short of the instant it
# aimed at; every threshold is EPS lenient so that it still grants.
EPS = 1e-6


class Algorithm(StrEnum):
    TOKEN_BUCKET = "token_bucket"
    LEAKY_BUCKET = "leaky_bucket"
    SLIDING_WINDOW_LOG = "sliding_window_log"
    SLIDING_WINDOW_COUNTER = "sliding_window_counter"


@dataclass(frozen=True)
class Limit:
    """`rate` grants per `period` seconds, `burst` of them at once.

    Promises, for every interval of length t (exact up to float rounding):
    - token_bucket, leaky_bucket: at most `burst + rate * t / period` grants
      (leaky_bucket defaults to burst 1, i.e. grants spaced period/rate apart);
    - sliding_window_log: at most `rate` grants in any window [s, s + period);
    - sliding_window_counter: at most `rate` grants in each aligned window
      [k*period, (k+1)*period) and fewer than `2 * rate` in any sliding one
      (the price of keeping three numbers instead of a log).
    """

    rate: float
    period: float = 1.0
    burst: float | None = None
    algorithm: Algorithm = Algorithm.TOKEN_BUCKET

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", Algorithm(self.algorithm))
        for name in ("rate", "period"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.burst is not None and not self.burst >= 1:
            raise ValueError(f"burst must be at least 1, got {self.burst!r}")

    @cached_property
    def capacity(self) -> float:
        """The most that may be granted at once."""
        if self.algorithm in (Algorithm.SLIDING_WINDOW_LOG, Algorithm.SLIDING_WINDOW_COUNTER):
            return self.rate
        if self.burst is not None:
            return self.burst
        return 1.0 if self.algorithm is Algorithm.LEAKY_BUCKET else max(1.0, self.rate)

    @cached_property
    def refill(self) -> float:
        """Grants regained per second."""
        return self.rate / self.period

    @property
    def ttl(self) -> float:
        """How long an untouched state still matters; after that it may be dropped."""
        return 2 * self.period + self.capacity * self.period / self.rate

    def as_args(self) -> list[float | str]:
        return [self.algorithm.value, self.rate, self.period, self.capacity]


class Verdict(NamedTuple):
    granted: bool
    state: list[float]
    wait: float  # seconds until the same request could be granted; 0 when granted


def decide(state: list[float] | None, limit: Limit, now: float, cost: float) -> Verdict:
    """Grant `cost` against `limit` at time `now`, or say how long to wait."""
    return _DECIDERS[limit.algorithm](state or [], limit, now, cost)


def _token_bucket(state: list[float], limit: Limit, now: float, cost: float) -> Verdict:
    capacity, refill = limit.capacity, limit.refill
    if state:
        tokens, last = state
        # max(): another process with a slightly earlier clock must not refill twice.
        tokens = min(capacity, tokens + max(0.0, now - last) * refill)
        last = max(last, now)
    else:
        tokens, last = capacity, now
    if tokens + EPS * refill >= cost:
        return Verdict(True, [tokens - cost, last], 0.0)
    return Verdict(False, [tokens, last], (cost - tokens) / refill)


def _leaky_bucket(state: list[float], limit: Limit, now: float, cost: float) -> Verdict:
    # GCRA: the theoretical arrival time (tat) moves one interval per grant.
    interval = limit.period / limit.rate
    tolerance = limit.capacity * interval
    tat = max(state[0], now) if state else now
    new_tat = tat + cost * interval
    if new_tat - now <= tolerance + EPS:
        return Verdict(True, [new_tat], 0.0)
    return Verdict(False, [tat], new_tat - now - tolerance)


def _sliding_window_log(state: list[float], limit: Limit, now: float, cost: float) -> Verdict:
    # state is flat pairs: [t0, cost0, t1, cost1, ...], in time order: a grant is stamped no earlier than the
    # one before it (a clock stepped back makes it expire later, never sooner), so the expired ones are a
    # prefix, found by bisection: a log of hundreds is sliced, not walked, on every decision.
    live = state[2 * bisect.bisect_right(state[0::2], now - limit.period + EPS) :]
    used = sum(live[1::2])
    if used + cost <= limit.rate:
        return Verdict(True, [*live, max(now, live[-2]) if live else now, cost], 0.0)
    wait = 0.0
    for t, c in zip(live[0::2], live[1::2], strict=True):
        used -= c
        wait = t + limit.period - now
        if used + cost <= limit.rate:
            break
    return Verdict(False, live, wait)


def _sliding_window_counter(state: list[float], limit: Limit, now: float, cost: float) -> Verdict:
    period, rate = limit.period, limit.rate
    window = math.floor((now + EPS) / period) * period
    start, previous, current = state if state else (window, 0.0, 0.0)
    if start != window:
        previous = current if start == window - period else 0.0
        current = 0.0
    elapsed = (now + EPS - window) / period
    if previous * (1 - elapsed) + current + cost <= rate:
        return Verdict(True, [window, previous, current + cost], 0.0)
    room = rate - current - cost
    if room >= 0 and previous > 0:
        # Within this window, once enough of the previous one has slid out.
        wait = window + (1 - room / previous) * period - now
    else:
        # Next window: what is current now becomes previous there.
        fraction = max(0.0, 1 - (rate - cost) / current) if current > 0 else 0.0
        wait = window + period + fraction * period - now
    return Verdict(False, [window, previous, current], max(wait, EPS))


_DECIDERS = {
    Algorithm.TOKEN_BUCKET: _token_bucket,
    Algorithm.LEAKY_BUCKET: _leaky_bucket,
    Algorithm.SLIDING_WINDOW_LOG: _sliding_window_log,
    Algorithm.SLIDING_WINDOW_COUNTER: _sliding_window_counter,
}

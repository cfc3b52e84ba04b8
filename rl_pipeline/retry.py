"""Retry timing: exponential backoff with jitter, under a server's Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Jitter(StrEnum):
    FULL = "full"  # uniform(0, backoff): the herd spreads the most
    EQUAL = "equal"  # backoff/2 + uniform(0, backoff/2): never retries at once
    DECORRELATED = "decorrelated"  # uniform(base, previous * 3), capped
    NONE = "none"  # the classic min(max_delay, base * 2^attempt) + uniform(0, jitter)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between tries of one request.

    A `Retry-After` from the server is a floor: the delay is never shorter.
    `deadline` bounds the whole request, waits included.
    """

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0
    jitter: Jitter = Jitter.FULL
    classic_jitter: float = 0.0  # the random(0, jitter) term of Jitter.NONE
    deadline: float = 600.0

    def delay(
        self, attempt: int, *, previous: float = 0.0, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 0)."""
        rng = rng or random
        backoff = min(self.max_delay, self.base_delay * 2 ** min(attempt, 64))  # 2**1024 overflows a float
        match self.jitter:
            case Jitter.FULL:
                delay = rng.uniform(0, backoff)
            case Jitter.EQUAL:
                delay = backoff / 2 + rng.uniform(0, backoff / 2)
            case Jitter.DECORRELATED:
                delay = min(self.max_delay, rng.uniform(self.base_delay, max(self.base_delay, previous * 3)))
            case Jitter.NONE:
                delay = backoff + rng.uniform(0, self.classic_jitter)
        if retry_after is not None:
            # Jitter may only lengthen what the server asked for.
            delay = retry_after + min(delay, self.base_delay)
        return delay

"""The demo API's own rate limits: the algorithms real servers enforce.

Written apart from the client's limiter (`rl_pipeline.limits`) on purpose:
the server is what the client must meet, not a mirror of it. Each limit
admits `rate` requests per `period` seconds:

- `token_bucket`: a bucket of `burst` tokens refilled at rate/period (most API gateways);
- `leaky_bucket`: requests spaced period/rate apart, `burst - 1` of them early at most
  (nginx `limit_req`, GCRA); with burst 1 a request even a millisecond early is refused;
- `fixed_window`: at most `rate` in each aligned window [k*period, (k+1)*period);
- `sliding_window_log`: at most `rate` in any window of `period` seconds;
- `sliding_window_counter`: the previous window weighted by how much of it still overlaps,
  plus the current one, must stay under `rate` (Cloudflare, many Redis recipes).

With `count_refused`, a refused request is counted as if it had been admitted
(a window log keeps it, a bucket goes into debt): a client that keeps knocking
stays locked out, as with many real APIs.

Requests are judged by when they reached the host, but this server's threads
may get to them out of that order (a thread the OS runs late). A server with
one event loop judges in arrival order; the leaky bucket with burst 1 does
the same here by keeping the admitted arrivals of the last moments and
admitting a request only if none lies within one interval of it, on either side.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, get_args

ServerAlgorithm = Literal[
    "token_bucket", "leaky_bucket", "fixed_window", "sliding_window_log", "sliding_window_counter"
]
SERVER_ALGORITHMS: tuple[ServerAlgorithm, ...] = get_args(ServerAlgorithm)


class ServerLimit:
    """One limit, decided under the caller's lock. `admit(now)` -> (admitted, seconds until one would be)."""

    def __init__(
        self, algorithm: ServerAlgorithm, rate: float, period: float, burst: int, count_refused: bool, now: float
    ) -> None:
        if algorithm not in SERVER_ALGORITHMS:
            raise ValueError(f"unknown server algorithm {algorithm!r}; known: {', '.join(SERVER_ALGORITHMS)}")
        self.algorithm, self.rate, self.period, self.count_refused = algorithm, rate, period, count_refused
        self.burst = burst
        self.interval = period / rate
        self.tokens, self.last = float(burst), now  # token bucket
        self.tat = now  # leaky bucket: the theoretical arrival time of the next request
        self.window_start, self.previous, self.current = self._window(now), 0, 0  # fixed and counter windows
        self.log: deque[float] = deque()  # sliding log
        self.admitted: deque[float] = deque()  # leaky bucket with burst 1: recent admitted arrivals

    def _window(self, now: float) -> float:
        return math.floor(now / self.period) * self.period

    def admit(self, now: float) -> tuple[bool, float]:
        return getattr(self, f"_{self.algorithm}")(now)

    def _token_bucket(self, now: float) -> tuple[bool, float]:
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate / self.period)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, 0.0
        if self.count_refused:
            self.tokens -= 1
        return False, (1 - self.tokens) * self.interval

    def _leaky_bucket(self, now: float) -> tuple[bool, float]:
        if self.burst == 1:
            return self._spaced(now)
        earliest = self.tat - (self.burst - 1) * self.interval
        if now >= earliest:
            self.tat = max(self.tat, now) + self.interval
            return True, 0.0
        if self.count_refused:
            self.tat += self.interval
        return False, earliest - now

    def _spaced(self, now: float) -> tuple[bool, float]:
        """Burst 1: admitted arrivals at least one interval apart, whatever order they are judged in."""
        while self.admitted and self.admitted[0] < now - 10 * self.interval:
            self.admitted.popleft()
        clash = [t for t in self.admitted if abs(now - t) < self.interval]
        if not clash:
            self.admitted.append(now)
            self.admitted = deque(sorted(self.admitted))
            self.tat = max(self.tat, now + self.interval)
            return True, 0.0
        if self.count_refused:
            self.admitted.append(now)
            self.admitted = deque(sorted(self.admitted))
            self.tat = max(self.tat, now + self.interval)
        return False, max(clash) + self.interval - now

    def _roll(self, now: float) -> None:
        window = self._window(now)
        if window != self.window_start:
            self.previous = self.current if window - self.window_start == self.period else 0
            self.current, self.window_start = 0, window

    def _fixed_window(self, now: float) -> tuple[bool, float]:
        self._roll(now)
        admitted = self.current < self.rate
        if admitted or self.count_refused:
            self.current += 1
        return admitted, 0.0 if admitted else self.window_start + self.period - now

    def _sliding_window_log(self, now: float) -> tuple[bool, float]:
        while self.log and self.log[0] <= now - self.period:
            self.log.popleft()
        admitted = len(self.log) < self.rate
        if admitted or self.count_refused:
            self.log.append(now)
        if admitted:
            return True, 0.0
        return False, self.log[len(self.log) - int(self.rate)] + self.period - now

    def _sliding_window_counter(self, now: float) -> tuple[bool, float]:
        self._roll(now)
        overlap = 1 - (now - self.window_start) / self.period
        admitted = self.previous * overlap + self.current + 1 <= self.rate
        if admitted or self.count_refused:
            self.current += 1
        if admitted:
            return True, 0.0
        # When enough of the previous window has slid out (or the next window, if that is not enough).
        room = self.rate - self.current - 1
        if room >= 0 and self.previous > 0:
            return False, max(0.0, self.window_start + (1 - room / self.previous) * self.period - now)
        # Next window, once enough of this one (its previous then) has slid out.
        share = max(0.0, 1 - (self.rate - 1) / self.current) if self.current else 0.0
        return False, self.window_start + (1 + share) * self.period - now

    def headers(self, now: float) -> dict[str, str]:
        """`X-RateLimit-Limit/-Remaining/-Reset` (Reset in seconds until Remaining next grows)."""
        if self.algorithm == "token_bucket":
            limit, remaining = self.burst, max(0, int(self.tokens))
            reset = max(0.0, 1 - self.tokens % 1 if self.tokens >= 0 else 1 - self.tokens) * self.interval
        elif self.algorithm == "leaky_bucket":
            limit = self.burst
            remaining = max(0, min(self.burst, math.floor((now - self.tat) / self.interval) + self.burst))
            reset = max(0.0, self.tat - (self.burst - 1) * self.interval - now) if remaining == 0 else 0.0
        elif self.algorithm == "sliding_window_log":
            while self.log and self.log[0] <= now - self.period:
                self.log.popleft()
            limit, remaining = int(self.rate), max(0, int(self.rate) - len(self.log))
            reset = self.log[0] + self.period - now if self.log else 0.0
        else:
            self._roll(now)
            used = (
                self.current
                if self.algorithm == "fixed_window"
                else self.previous * (1 - (now - self.window_start) / self.period) + self.current
            )
            limit, remaining = int(self.rate), max(0, math.floor(self.rate - used))
            reset = self.window_start + self.period - now
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{reset:.3f}",
        }

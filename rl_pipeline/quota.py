"""Daily and monthly request quotas, kept in the shared store, and a completion forecast.

Every request sent is charged (retries too) before it goes; a charge that
would pass a quota raises QuotaExhausted and charges nothing, so the quota is
never exceeded by this client, whatever number of workers share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from rl_pipeline.clock import SYSTEM_CLOCK, Clock, in_words, iso_time
from rl_pipeline.errors import QuotaExhausted
from rl_pipeline.state import StateStore, keys


@dataclass(frozen=True)
class QuotaPolicy:
    daily: int | None = None
    monthly: int | None = None
    reset_hour: int = 0  # UTC hour at which a day (and a month, on its first day) starts

    def periods(self, now: float) -> tuple[float, float, float, float]:
        """(day start, next day start, month start, next month start) around `now`, as epoch seconds."""
        moment = datetime.fromtimestamp(now, UTC) - timedelta(hours=self.reset_hour)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        next_month = (month + timedelta(days=32)).replace(day=1)
        shift = timedelta(hours=self.reset_hour)
        starts = [(t + shift).timestamp() for t in (day, day + timedelta(days=1), month, next_month)]
        return starts[0], starts[1], starts[2], starts[3]


@dataclass(frozen=True)
class Usage:
    day_used: int
    month_used: int
    day_left: float  # math.inf when there is no such quota
    month_left: float
    day_resets_at: float
    month_resets_at: float

    @property
    def left(self) -> float:
        return min(self.day_left, self.month_left)


@dataclass(frozen=True)
class Counts:
    """What the ledger stores: the requests used today and this month, and of today's, how many this
    store counted itself (the rest the server's remaining-header says were used, by others or by a quota
    smaller than the file's)."""

    day_start: float
    day_used: int
    month_start: float
    month_used: int
    day_own: int

    def used(self, requests: int, *, own: bool) -> Counts:
        """These counts with `requests` more used (`own`: counted by this store)."""
        return replace(
            self,
            day_used=self.day_used + requests,
            month_used=self.month_used + requests,
            day_own=self.day_own + (requests if own else 0),
        )

    def encode(self) -> str:
        return f"{self.day_start!r},{self.day_used},{self.month_start!r},{self.month_used},{self.day_own}"


class QuotaLedger:
    """One API's quota ledger; every thread, process and machine on the store shares it."""

    def __init__(
        self, store: StateStore, api: str, policy: QuotaPolicy, clock: Clock = SYSTEM_CLOCK, key: str | None = None
    ) -> None:
        self.store, self.api, self.policy, self.clock = store, api, policy, clock
        self.key = key or keys.quota(api)

    def _read(self, raw: str | None, now: float) -> Counts:
        """The stored counts, rolled over to the current periods.

        A stored period is never rolled back: a host whose clock is behind the one that rolled it over
        charges the new period too, rather than flipping the ledger between two days at the reset."""
        day_start, _, month_start, _ = self.policy.periods(now)
        fields = [float(x) for x in raw.split(",")] if raw else [day_start, 0, month_start, 0]
        stored_day, day_used, stored_month, month_used = fields[:4]
        day_own = fields[4] if len(fields) > 4 else day_used  # kept by an earlier version: all of it its own
        today = stored_day >= day_start
        return Counts(
            max(day_start, stored_day),
            int(day_used) if today else 0,
            max(month_start, stored_month),
            int(month_used) if stored_month >= month_start else 0,
            int(day_own) if today else 0,
        )

    def usage(self) -> Usage:
        now = self.clock.now()
        counts = self._read(self.store.get(self.key), now)
        _, next_day, _, next_month = self.policy.periods(now)
        daily, monthly = self.policy.daily, self.policy.monthly
        return Usage(
            counts.day_used,
            counts.month_used,
            daily - counts.day_used if daily is not None else math.inf,
            monthly - counts.month_used if monthly is not None else math.inf,
            next_day,
            next_month,
        )

    def charge(self, requests: int = 1) -> None:
        """Count `requests` about to be sent, or raise QuotaExhausted and count nothing."""
        now = self.clock.now()

        def apply(raw: str | None) -> tuple[str | None, QuotaExhausted | None]:
            counts = self._read(raw, now)
            _, next_day, _, next_month = self.policy.periods(now)
            daily, monthly = self.policy.daily, self.policy.monthly
            if daily is not None and counts.day_used + requests > daily:
                return raw, QuotaExhausted(self.api, "daily", counts.day_used, daily, next_day, own=counts.day_own)
            if monthly is not None and counts.month_used + requests > monthly:
                return raw, QuotaExhausted(self.api, "monthly", counts.month_used, monthly, next_month)
            return counts.used(requests, own=True).encode(), None

        refused = self.store.update(self.key, apply)
        if refused:
            raise refused

    def follow_server(self, day_remaining: int) -> None:
        """The server says how much of today's quota is left: never believe in more than that."""
        if self.policy.daily is None:
            return
        now = self.clock.now()

        def apply(raw: str | None) -> tuple[str, None]:
            counts = self._read(raw, now)
            seen = max(counts.day_used, self.policy.daily - day_remaining)
            return counts.used(seen - counts.day_used, own=False).encode(), None

        self.store.update(self.key, apply)


@dataclass(frozen=True)
class Forecast:
    partitions: int
    requests: int
    finishes_at: float  # epoch seconds
    limited_by: str  # "rate", "daily quota" or "monthly quota"

    def describe(self, now: float) -> str:
        if not self.partitions:
            return "nothing missing"
        return (
            f"{self.partitions} partitions, ~{self.requests} requests: done by {iso_time(self.finishes_at)} "
            f"(in {in_words(self.finishes_at - now)}, limited by the {self.limited_by})"
        )


def forecast(
    partitions: int,
    requests_per_partition: float,
    rate_per_second: float,
    usage: Usage,
    policy: QuotaPolicy,
    now: float,
    reserve: int = 0,
) -> Forecast:
    """When `partitions` more partitions will be done: sending at `rate_per_second`, never
    past the quotas (less `reserve` a day), waiting for each reset when a quota is spent."""
    total = remaining = math.ceil(partitions * requests_per_partition)
    daily = (policy.daily if policy.daily is not None else math.inf) - reserve
    monthly = policy.monthly if policy.monthly is not None else math.inf
    clock, limited_by = now, "rate"
    day_left, month_left = usage.day_left - reserve, usage.month_left
    day_reset, month_reset = usage.day_resets_at, usage.month_resets_at
    for _ in range(3660):  # ten years of days at most
        sendable = max(0, min(remaining, day_left, month_left))
        clock += sendable / rate_per_second
        remaining -= sendable
        month_left -= sendable
        if remaining <= 0:
            return Forecast(partitions, total, clock, limited_by)
        limited_by = "monthly quota" if month_left <= 0 else "daily quota"
        clock = day_reset  # wait for the next day's quota
        _, day_reset, _, next_month = policy.periods(clock)
        day_left = daily
        if clock >= month_reset:
            month_left, month_reset = monthly, next_month
    return Forecast(partitions, total, math.inf, limited_by)

"""A circuit breaker per endpoint, shared by every worker through the state store.

closed --(N consecutive failures, or a failure rate over a window)--> open
open --(cool-down over)--> half-open: exactly one worker, anywhere, gets the probe
half-open --(probe succeeds)--> closed;  --(probe fails)--> open again

Only the probe's own outcome decides half-open: a straggler (a request sent
before the circuit opened) that answers meanwhile changes nothing.

While open, no worker in any process sends a request to the endpoint. A
failure is what says the endpoint is unwell: a 5xx, a timeout, a dropped
connection, a broken body. A 429 is the rate limiter's business, and other
4xx are the caller's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

from rl_pipeline.clock import SYSTEM_CLOCK, Clock
from rl_pipeline.errors import CircuitOpen
from rl_pipeline.state import StateStore


class Status(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    """When to open. The failure rate counts a window's requests from its first
    failure on: a healthy endpoint then costs one read per request, no write."""

    consecutive_failures: int = 5  # open after this many failures in a row
    failure_rate: float = 0.5  # or when this share of a window's requests failed
    min_requests: int = 20  # (counting only windows with at least this many requests)
    window: float = 60.0  # seconds
    cooldown: float = 10.0  # seconds open before one probe may go
    probe_timeout: float = 60.0  # a probe not heard from by then is presumed dead; another may go


@dataclass(frozen=True)
class BreakerState:
    status: Status = Status.CLOSED
    consecutive: int = 0
    window_start: float = 0.0
    requests: int = 0
    failures: int = 0
    open_until: float = 0.0
    probe_until: float = 0.0  # half-open: the probe's lease
    probe: str = ""  # half-open: who holds it

    @property
    def blocked_until(self) -> float:
        """While no request may go: until when (the cool-down's end, or the probe's lease)."""
        return self.open_until if self.status is Status.OPEN else self.probe_until

    def encode(self) -> str:
        return ",".join(
            [self.status.value]
            + [repr(v) for v in (self.consecutive, self.window_start, self.requests, self.failures)]
            + [repr(self.open_until), repr(self.probe_until), self.probe]
        )

    @classmethod
    def decode(cls, raw: str | None) -> BreakerState:
        if not raw:
            return cls()
        status, consecutive, start, requests, failures, open_until, probe_until, *probe = raw.split(",")
        return cls(
            Status(status), int(consecutive), float(start), int(requests), int(failures), float(open_until),
            float(probe_until), probe[0] if probe else "",
        )  # fmt: skip


def admit(state: BreakerState, policy: BreakerPolicy, now: float, probe: str) -> tuple[bool, BreakerState]:
    """May a request go now? Taking the half-open probe (as `probe`) is part of the answer."""
    if state.status is Status.CLOSED:
        return True, state
    if state.status is Status.OPEN and now < state.open_until:
        return False, state
    if state.status is Status.HALF_OPEN and now < state.probe_until:
        return False, state  # another worker's probe is in flight
    return True, replace(state, status=Status.HALF_OPEN, probe_until=now + policy.probe_timeout, probe=probe)


def record(state: BreakerState, policy: BreakerPolicy, now: float, success: bool, probe: str = "") -> BreakerState:
    """The state after a request's outcome (`probe`: the lease it was sent under, if any)."""
    if state.status is Status.HALF_OPEN:
        if probe != state.probe:
            return state  # a straggler: only the probe decides
        if success:
            return BreakerState(window_start=now)
        return BreakerState(Status.OPEN, open_until=now + policy.cooldown, window_start=now)
    if state.status is Status.OPEN:
        return state  # a straggler sent before the circuit opened
    if now - state.window_start >= policy.window:
        state = replace(state, window_start=now, requests=0, failures=0)
    requests, failures = state.requests + 1, state.failures + (not success)
    consecutive = 0 if success else state.consecutive + 1
    tripped = consecutive >= policy.consecutive_failures or (
        requests >= policy.min_requests and failures / requests >= policy.failure_rate
    )
    if tripped:
        return BreakerState(Status.OPEN, open_until=now + policy.cooldown, window_start=now)
    return replace(state, consecutive=consecutive, requests=requests, failures=failures)


class CircuitBreaker:
    """One endpoint's breaker; its state lives in the shared store."""

    def __init__(
        self, store: StateStore, key: str, name: str, policy: BreakerPolicy | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.store, self.key, self.name = store, key, name
        self.policy = policy or BreakerPolicy()
        self.clock = clock

    def state(self) -> BreakerState:
        return BreakerState.decode(self.store.get(self.key))

    def check(self) -> bool:
        """Raise CircuitOpen while no request may go (open, or another's probe in flight); take nothing.
        True: closed (a request may simply go); False: the next request must take the probe's lease."""
        state = self.state()
        if not admit(state, self.policy, self.clock.now(), "")[0]:
            raise CircuitOpen(self.name, state.blocked_until)
        return state.status is Status.CLOSED

    def before_request(self) -> str:
        """Return if a request may go, with the probe lease it holds ("" while closed); raise CircuitOpen
        saying until when otherwise. Call it just before sending: the lease runs from here."""
        state = self.state()
        if state.status is Status.CLOSED:  # the common case costs one read
            return ""
        lease = uuid.uuid4().hex

        def take(raw: str | None) -> tuple[str, BreakerState]:
            state = admit(BreakerState.decode(raw), self.policy, self.clock.now(), lease)[1]
            return state.encode(), state

        state = self.store.update(self.key, take)
        if state.status is Status.HALF_OPEN and state.probe == lease:
            return lease
        if state.status is Status.CLOSED:
            return ""
        raise CircuitOpen(self.name, state.blocked_until)

    def after_request(self, success: bool, probe: str = "") -> BreakerState:
        """Record an outcome; `probe` is what `before_request` returned for it."""
        now, state = self.clock.now(), self.state()
        if success and state == BreakerState(window_start=state.window_start):
            return state  # closed and clean: one read, nothing to write

        def note(raw: str | None) -> tuple[str, BreakerState]:
            state = record(BreakerState.decode(raw), self.policy, now, success, probe)
            return state.encode(), state

        return self.store.update(self.key, note)

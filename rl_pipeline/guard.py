"""The policy half of every request to one endpoint: may it go now, and what did its answer teach?

Before a request: quota -> circuit breaker, then, at the write itself (its
connection open, its bytes built), the rate: the learned pace, and the file's
limits as ceilings, so that nothing stands between a grant and the send.
After it: the server's headers, a 429's pause and the
learned pace, the quota the server reports, the breaker. Everything lives in
the shared store, so every worker on one API and credential obeys one guard.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from rl_pipeline import reachability
from rl_pipeline.breaker import CircuitBreaker
from rl_pipeline.clock import Clock, ReadClock
from rl_pipeline.errors import Blocked, CircuitOpen, QuotaExhausted
from rl_pipeline.events import EventSink, ignore
from rl_pipeline.headers import ServerLimit, read_server_limit
from rl_pipeline.limiter import RateLimiter
from rl_pipeline.limits import Algorithm, Limit
from rl_pipeline.pace import LearnedPace
from rl_pipeline.quota import QuotaLedger
from rl_pipeline.sources import ApiSpec, RateLimitSpec
from rl_pipeline.state import StateStore, keys

PACE = "pace"


def paced(rate: float) -> Limit:
    """Requests spaced evenly `1/rate` apart, none early: what a server with no burst accepts."""
    return Limit(rate=rate, burst=1, algorithm=Algorithm.LEAKY_BUCKET)


def shortest_rate(specs: list[RateLimitSpec]) -> float | None:
    """Requests/s of the limit with the shortest period (the slowest, if several share it)."""
    if not specs:
        return None
    shortest = min(rl.period for rl in specs)
    return min(rl.rate / rl.period for rl in specs if rl.period == shortest)


def refused_for_rate(status: int, server: ServerLimit) -> bool:
    """A 429, or a 403 that says it is the rate limit (GitHub answers its limits with 403 and
    `X-RateLimit-Remaining: 0`, or `Retry-After`): a wait, not a permission the token lacks."""
    return status == 429 or (status == 403 and (server.retry_after is not None or server.remaining == 0))


@dataclass(frozen=True)
class Heard:
    """What the guard made of an answer: whether the rate limit refused it, and its Retry-After."""

    rate_limited: bool
    retry_after: float | None


@dataclass(frozen=True)
class Waited:
    """Seconds one admission spent waiting, by cause; for the half-open probe, its grant and its lease."""

    quota: float
    circuit: float
    limiter: float = 0.0
    granted_at: float | None = None  # None: the rate's grant is yet to be taken, at the write (`grant`)
    probe: str = ""


class ApiShared:
    """What every endpoint of one API + credential shares: the quota ledger and the learned pace."""

    def __init__(self, name: str, spec: ApiSpec, store: StateStore, namespace: str, clock: Clock) -> None:
        self.name, self.spec, self.store, self.namespace, self.clock = name, spec, store, namespace, clock
        self.base_url = spec.resolved_base_url()
        self.quota = (
            QuotaLedger(store, name, spec.quota.policy(), clock, key=keys.quota(namespace)) if spec.quota else None
        )
        self.pace = LearnedPace(store, keys.pace(namespace), spec.pace_policy(), clock)
        self._heard_key, self._heard = keys.answered(namespace), False

    def heard(self) -> None:
        """The API answered: kept in the store (once per client), so that every process knows it has."""
        if not self._heard:
            self.store.set(self._heard_key, "1")
            self._heard = True

    def never_answered(self) -> bool:
        """No process on this store has had an answer from the API with this credential, and this process
        could not connect: a host that is down or wrong, not an outage to wait out."""
        return not self._heard and self.store.get(self._heard_key) is None


class EndpointGuard:
    """Admits requests to one endpoint and learns from their answers.

    `admit` returns once quota and circuit let a request go, `grant` once every
    limit does (just before the write), `written` hears the write, and
    `on_answer` takes the server's answer.
    `on_event` hears what a user should see: 429 pauses, pace changes, circuit and quota waits.
    """

    def __init__(
        self,
        shared: ApiShared,
        endpoint: str,
        *,
        rng: random.Random,
        on_event: EventSink = ignore,
        max_pause: float = 600.0,
    ) -> None:
        spec, margin = shared.spec, shared.spec.pacing.margin
        self.shared, self.endpoint, self.rng, self.on_event = shared, endpoint, rng, on_event
        self.max_pause = max_pause  # the longest pause a server's answer may set: no run waits longer anyway
        self.clock = shared.clock
        self.name = f"{shared.name}.{endpoint}"
        endpoint_spec = spec.endpoints[endpoint]
        limits = {f"api:{rl.key}": rl.to_limit() for rl in spec.rate_limits}
        limits |= {f"endpoint:{endpoint}:{rl.key}": rl.to_limit() for rl in endpoint_spec.rate_limits}
        limits[PACE] = paced(shared.pace.rate())
        own = shortest_rate(endpoint_spec.rate_limits)
        if own is not None:
            limits[f"endpoint:{endpoint}:{PACE}"] = paced(own * (1 - margin))
        self._decided = ReadClock(self.clock)  # what the store read to decide a grant: when it decided
        self.limiter = RateLimiter(shared.store, limits, namespace=shared.namespace, clock=self._decided)
        self.breaker = CircuitBreaker(
            shared.store, keys.breaker(self.name), self.name, spec.circuit_breaker.policy(), self.clock
        )

    def admit(self, started: float, deadline: float) -> Waited:
        """Wait until quota and circuit let a request go; the rate's grant is left to `grant`, at the write.
        The half-open probe is granted here, and then takes its lease, so that the lease runs from the send,
        not from a wait for the rate. Raises QuotaExhausted or Blocked."""
        quota = self._charge_quota()
        circuit = limiter = 0.0
        while True:
            waited, closed = self._wait_for_circuit(started)
            circuit += waited
            if closed:
                return Waited(quota, circuit)
            asked = self.clock.now()
            granted_at = self.grant(started, deadline)
            limiter += self.clock.now() - asked
            try:
                return Waited(quota, circuit, limiter, granted_at, self.breaker.before_request())
            except CircuitOpen:
                continue  # another worker took the probe during the rate wait: wait for its outcome

    def grant(self, started: float, deadline: float) -> float:
        """Wait for, and take, a grant from every limit at the pace as it is now; return when the store
        decided it, which the next grant is spaced from. Call it just before the request's bytes are
        written, its connection open, so that its write follows at once. Raises Blocked when no grant
        comes within `deadline` seconds of `started`.

        A 429 seen by another worker during the wait (its pause) lowers the
        pace this grant is spaced by.
        """
        while True:
            self.limiter.set_limit(PACE, paced(self.shared.pace.rate()))
            wait = self.limiter.attempt()
            if wait == 0.0:
                return self._decided.last
            if self.clock.now() + wait - started > deadline:
                raise Blocked(
                    f"rate limit {', '.join(self.limiter.limits)}: no grant within the {deadline:g}s request "
                    f"deadline (next in {wait:.3f}s)"
                )
            self.clock.sleep(wait)

    def _pace_interval(self) -> float:
        """Seconds between two grants at the pace as it was last set."""
        return 1 / self.limiter.limits[PACE].rate

    def written(self, granted_at: float) -> None:
        """Call the moment the request has been written to its socket (or failed unwritten), with when it was
        granted: a write later than the slack after its grant pushes the next grant back from now.

        A request written late (a busy machine descheduled its thread, a dropped
        connection had to be opened again) reaches the server late, and the
        next one, sent on time, too soon after it, which a server without
        burst refuses. The pace is `margin` under the rate; half of that slack
        is kept for the network, the other half absorbs lateness; a later write
        pushes the next grant back to the server's interval (the pace's, less
        half the slack) from it.
        """
        slack = self._pace_interval() * self.shared.spec.pacing.margin / 2
        if self.clock.now() - granted_at > slack:
            self.limiter.pause(self._pace_interval() - slack)

    def _charge_quota(self) -> float:
        """Count the request against the quotas; wait for a reset within `max_wait`, else raise QuotaExhausted."""
        ledger, quota_spec = self.shared.quota, self.shared.spec.quota
        if ledger is None or quota_spec is None:
            return 0.0
        waited = 0.0
        while True:
            try:
                ledger.charge()
                return waited
            except QuotaExhausted as exc:
                wait = exc.resets_at - self.clock.now()
                if wait > quota_spec.max_wait:
                    raise
                self.on_event("quota", f"{self.shared.name}: {exc}; waiting {wait:.0f}s for the reset")
                waited += wait
                self.clock.sleep(wait + self.rng.uniform(0, 1))

    def _wait_for_circuit(self, started: float) -> tuple[float, bool]:
        """Return (seconds waited, whether the circuit is closed) once a request may go; wait (bounded) or
        raise Blocked while the circuit is open or another worker's probe is in flight."""
        config = self.shared.spec.circuit_breaker
        waited = 0.0
        while True:
            try:
                return waited, self.breaker.check()
            except CircuitOpen as exc:
                if reachability.never_reached(self.shared.base_url) or self.shared.never_answered():
                    raise Blocked(f"{exc}: {self.shared.base_url} has never answered") from None
                now = self.clock.now()
                # Poll: a half-open probe usually answers well before its lease ends.
                pause = min(max(exc.until - now, 0.0), 1.0) + self.rng.uniform(0, 0.05)
                if config.on_open == "fail" or now + pause - started > config.max_wait:
                    raise Blocked(str(exc)) from None
                self.on_event("circuit", f"{exc}; waiting (at most {config.max_wait:g}s in all)")
                waited += pause
                self.clock.sleep(pause)

    def on_answer(self, status: int, headers: Mapping[str, str], *, healthy: bool = True, probe: str = "") -> Heard:
        """Learn from an HTTP answer (`healthy`: its body could be read; `probe`: the lease it was sent
        under): whether the rate limit refused it, and its Retry-After.

        A 429 (or a 403 saying it is the rate limit) pauses every worker sharing
        the budget (for its Retry-After, or the learned pause) and lowers the
        shared pace; a budget the server reports spent pauses everyone until it
        refills (unless it refills before the pace's next grant); a success lets
        the pace grow back. A 5xx counts against the breaker and says nothing
        about the rate.
        """
        server = read_server_limit(headers, self.clock.now())
        shared = self.shared
        shared.heard()
        remaining = shared.spec.quota and shared.spec.quota.remaining_header
        if remaining and shared.quota and headers.get(remaining, "").isdigit():
            shared.quota.follow_server(int(headers[remaining]))
        refused = refused_for_rate(status, server)
        pause = server.pause_for if (refused or server.exhausted) else None
        if not refused and pause is not None and pause <= self._pace_interval():
            # A budget spent that refills before the pace's next grant (a bucket with no burst says so after
            # every request): the pace waits already, and a pause counted from this answer would only add
            # the round trip to every interval.
            pause = None
        if refused:
            refusal = shared.pace.on_refused(server.retry_after)
            pause = min(max(pause or 0.0, refusal.pause), self.max_pause)
            if refusal.decreased:
                why = (
                    f" (its window is still shut after a pause: it took {refusal.window_took:.2f} req/s)"
                    if refusal.window_took
                    else ""
                )
                self.on_event(
                    "pace",
                    f"{self.name}: HTTP {status}{why}; pacing at {refusal.after:.2f} req/s (was {refusal.before:.2f}; "
                    f"back to {refusal.back_to:.2f} within {shared.pace.policy.recover:g}s; the sources file allows "
                    f"{shared.pace.policy.ceiling:g}); everyone waits {pause:.1f}s",
                )
            else:
                stays = f"the pace stays at {refusal.after:.2f} req/s"
                self.on_event("429", f"{self.name}: HTTP {status}; {stays}; everyone waits {pause:.1f}s")
        elif status < 400 and (counted := shared.pace.on_success()):
            self.on_event(
                "pace",
                f"{self.name}: the server took {counted.window_took:.2f} req/s until its window's end, the wait it "
                f"named included; pacing at {counted.after:.2f} req/s (was {counted.before:.2f}; the sources file "
                f"allows {shared.pace.policy.ceiling:g})",
            )
        if pause:
            pause = min(pause, self.max_pause)
            if not refused and pause >= 1.0:  # shorter ones come with every answer of a bucket with no burst
                self.on_event("budget", f"{self.name}: the server says its budget is spent; everyone waits "
                              f"{pause:.1f}s for it to refill")  # fmt: skip
            self.limiter.pause(pause)
        self.breaker.after_request(success=healthy and status < 500, probe=probe)
        return Heard(refused, server.retry_after)

    def on_failure(self, probe: str = "") -> None:
        """A timeout, a dropped connection or a broken body: the endpoint may be unwell."""
        self.breaker.after_request(success=False, probe=probe)

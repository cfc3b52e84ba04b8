"""The HTTP client: every request passes the rate limiter, then retries.

Request path: rate limit -> send -> classify (ok / retry / fail) -> maybe
wait and try again. Pages stream one at a time; a day is never held whole.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import requests

from rl_pipeline.breaker import CircuitBreaker, CircuitOpen
from rl_pipeline.clock import SYSTEM_CLOCK, Clock
from rl_pipeline.limits import Limit, RateLimiter
from rl_pipeline.limits.adaptive import AdaptiveRate
from rl_pipeline.limits.headers import read_server_limit
from rl_pipeline.pagination import PageRequest, PaginationError, dig, first_page, next_page
from rl_pipeline.quota import QuotaExhausted, QuotaLedger
from rl_pipeline.retry import RetryPolicy
from rl_pipeline.sources import ApiSpec, EndpointSpec
from rl_pipeline.state import StateStore

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LEARNED = "api:learned"


def _learned_limit(rate: float) -> Limit:
    # Unknown burst: allow none, space requests evenly.
    return Limit(rate=rate, burst=1)


class ApiError(RuntimeError):
    """A request that failed for good: a non-retryable status, or retries spent.

    The message names the source, partition and page, the status and the
    server's own words, never the credentials.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MissingTokenError(RuntimeError):
    """The environment variable holding an API's token is not set."""


@dataclass
class RequestStats:
    """What the client did, for materialization metadata. Thread-safe."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429s received
    limiter_wait_s: float = 0.0  # time spent waiting for our own limiter
    retry_wait_s: float = 0.0  # time spent in backoff
    circuit_wait_s: float = 0.0  # time spent waiting for an open circuit
    quota_wait_s: float = 0.0  # time spent waiting for a quota to reset
    statuses: Counter[str] = field(default_factory=Counter)  # every outcome: "200", "503", "ReadTimeout", ...
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def count_status(self, status: str) -> None:
        with self._lock:
            self.statuses[status] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters now, as plain values."""
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "http_429": self.rate_limited,
                "limiter_wait_s": self.limiter_wait_s,
                "retry_wait_s": self.retry_wait_s,
                "circuit_wait_s": self.circuit_wait_s,
                "quota_wait_s": self.quota_wait_s,
                "statuses": dict(self.statuses),
            }

    def since(self, before: dict[str, Any]) -> dict[str, Any]:
        """What changed after `before` (a snapshot): counts, seconds rounded to ms, statuses seen."""
        now = self.snapshot()
        delta: dict[str, Any] = {
            name: round(value - before[name], 3) if isinstance(value, float) else value - before[name]
            for name, value in now.items()
            if name != "statuses"
        }
        delta["statuses"] = {
            status: count - before["statuses"].get(status, 0)
            for status, count in now["statuses"].items()
            if count > before["statuses"].get(status, 0)
        }
        return delta


@dataclass(frozen=True)
class Page:
    number: int  # 1-based, within the day
    request: PageRequest
    records: list[dict[str, Any]]
    next: PageRequest | None
    total: int | None = None  # the day's record count, where the API reports one


def credential_fingerprint(token: str | None) -> str:
    """A short, non-reversible name for a credential: budgets are per API + credential."""
    return hashlib.sha256((token or "").encode()).hexdigest()[:12]


class ApiClient:
    """One API, one credential, one `requests.Session`, one shared rate budget."""

    def __init__(
        self,
        name: str,
        spec: ApiSpec,
        *,
        token: str | None,
        store: StateStore,
        retry: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        timeout: tuple[float, float] = (5.0, 30.0),
        session: requests.Session | None = None,
    ) -> None:
        if spec.token_env and not token:
            raise MissingTokenError(f"source {name}: no API token; set the environment variable {spec.token_env}")
        self.name = name
        self.spec = spec
        self.base_url = spec.resolved_base_url()
        self.store = store
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.timeout = timeout
        self.stats = RequestStats()
        self._token = token
        self._session = session or requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._namespace = f"{name}:{credential_fingerprint(token)}"
        self._limiters: dict[str, RateLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._rng = random.Random()
        self.quota = (
            QuotaLedger(store, name, spec.quota.policy(), clock, key=f"quota:{self._namespace}") if spec.quota else None
        )
        self.adaptive = (
            AdaptiveRate(store, f"rl:{{{self._namespace}}}:learned_rate", spec.adaptive.policy(), clock)
            if spec.adaptive
            else None
        )

    def __repr__(self) -> str:
        return f"ApiClient({self.name!r}, base_url={self.base_url!r}, store={self.store!r})"

    def limiter(self, endpoint: str) -> RateLimiter:
        """The API's limits plus the endpoint's own (plus the learned rate), decided together."""
        if endpoint not in self._limiters:
            spec = self.spec.endpoints[endpoint]
            limits = {f"api:{rl.name}": rl.to_limit() for rl in self.spec.rate_limits}
            limits |= {f"endpoint:{endpoint}:{rl.name}": rl.to_limit() for rl in spec.rate_limits}
            if self.adaptive:
                limits[LEARNED] = _learned_limit(self.adaptive.current())
            self._limiters[endpoint] = RateLimiter(self.store, limits, namespace=self._namespace, clock=self.clock)
        return self._limiters[endpoint]

    def rate_per_second(self) -> float:
        """The tightest API-wide rate (the learned one included): what forecasts assume."""
        limits = [rl.to_limit() for rl in self.spec.rate_limits]
        limits += [_learned_limit(self.adaptive.current())] if self.adaptive else []
        return min((limit.rate / limit.period for limit in limits), default=1.0)

    def breaker(self, endpoint: str) -> CircuitBreaker:
        """The endpoint's circuit breaker, shared by every worker (any credential)."""
        if endpoint not in self._breakers:
            self._breakers[endpoint] = CircuitBreaker(
                self.store,
                f"breaker:{self.name}.{endpoint}",
                f"{self.name}.{endpoint}",
                self.spec.circuit_breaker.policy(),
                self.clock,
            )
        return self._breakers[endpoint]

    def fetch_day(self, endpoint: str, day: date, start: PageRequest | None = None) -> Iterator[Page]:
        """Every page of one day of `endpoint`, from `start` (a checkpoint) or the first."""
        spec: EndpointSpec = self.spec.endpoints[endpoint]
        request = start or first_page(
            spec.pagination, self.base_url + spec.path, {**spec.params, **spec.day.params(day)}
        )
        seen: set[str] = set()
        number = 0
        while request is not None:
            number += 1
            where = f"source {self.name}.{endpoint}, partition {day.isoformat()}, page {number}"
            key = request.to_json()
            if key in seen:
                raise PaginationError(f"{where}: the API led back to an earlier page ({request.params or request.url})")
            seen.add(key)
            body, links = self.get_json(endpoint, request, where)
            records = dig(body, spec.records_path)
            if not isinstance(records, list):
                raise PaginationError(
                    f"{where}: expected a list of records at {spec.records_path or 'the top level'!r}, "
                    f"got {type(records).__name__}"
                )
            following = next_page(spec.pagination, request, body, records, links)
            total = dig(body, getattr(spec.pagination, "total_path", None))
            yield Page(number, request, records, following, total if isinstance(total, int) else None)
            request = following

    def get_json(self, endpoint: str, request: PageRequest, where: str) -> tuple[Any, dict[str, dict[str, str]]]:
        """GET one page: circuit breaker, rate limit, send, classify; retry what is worth retrying."""
        limiter, breaker = self.limiter(endpoint), self.breaker(endpoint)
        started = self.clock.now()
        previous_delay = 0.0
        for attempt in range(self.retry.max_attempts):
            self._wait_for_circuit(breaker, started, where)
            if self.adaptive:
                limiter.set_limit(LEARNED, _learned_limit(self.adaptive.current()))
            self.stats.add(limiter_wait_s=limiter.acquire(timeout=self.retry.deadline))
            self._charge_quota(where)
            self.stats.add(requests=1)
            outcome, retry_after = self._try_once(request, where, limiter, breaker)
            if not isinstance(outcome, str):
                return outcome
            problem = outcome
            if attempt + 1 == self.retry.max_attempts:
                break
            delay = self.retry.delay(attempt, previous=previous_delay, retry_after=retry_after, rng=self._rng)
            if self.clock.now() + delay - started > self.retry.deadline:
                raise ApiError(f"{where}: {problem}; the next retry would pass the {self.retry.deadline:g}s deadline")
            previous_delay = delay
            self.stats.add(retries=1, retry_wait_s=delay)
            self.clock.sleep(delay)
        raise ApiError(f"{where}: {problem}; gave up after {self.retry.max_attempts} attempts")

    def _charge_quota(self, where: str) -> None:
        """Count the request against the quotas; wait for a reset within `max_wait`, else raise QuotaExhausted."""
        if self.quota is None or self.spec.quota is None:
            return
        while True:
            try:
                self.quota.charge()
                return
            except QuotaExhausted as exc:
                wait = exc.resets_at - self.clock.now()
                if wait > self.spec.quota.max_wait:
                    raise exc.at(where) from None
                self.stats.add(quota_wait_s=wait)
                self.clock.sleep(wait + self._rng.uniform(0, 1))

    def _wait_for_circuit(self, breaker: CircuitBreaker, started: float, where: str) -> None:
        """Return once a request may go; wait (bounded) or fail while the circuit is open, as configured."""
        config = self.spec.circuit_breaker
        while True:
            try:
                breaker.before_request()
                return
            except CircuitOpen as exc:
                now = self.clock.now()
                # Poll: a half-open probe usually answers well before its lease ends.
                pause = min(max(exc.until - now, 0.0), 1.0) + self._rng.uniform(0, 0.05)
                if config.on_open == "fail" or now + pause - started > config.max_wait:
                    raise ApiError(f"{where}: {exc}") from None
                self.stats.add(circuit_wait_s=pause)
                self.clock.sleep(pause)

    def _try_once(
        self, request: PageRequest, where: str, limiter: RateLimiter, breaker: CircuitBreaker
    ) -> tuple[Any, float | None]:
        """((body, links), None) on success, else (why it failed, how long the server asked to wait).

        A 429, or a budget the server reports spent, pauses every worker that
        shares this budget, not only this one. 5xx, timeouts, dropped
        connections and broken bodies count against the circuit breaker.
        """
        try:
            response = self._session.get(request.url, params=request.params, timeout=self.timeout)
        except (requests.Timeout, requests.ConnectionError) as exc:
            self.stats.count_status(type(exc).__name__)
            breaker.after_request(success=False)
            return f"{type(exc).__name__} from {self._path(request)}", None
        status = response.status_code
        self.stats.count_status(str(status))
        server = read_server_limit(response.headers, self.clock.now())
        if status == 429:
            self.stats.add(rate_limited=1)
        if self.adaptive and status == 429:
            self.adaptive.on_throttled()
        elif self.adaptive and status < 400:
            self.adaptive.on_success()
        remaining = self.spec.quota and self.spec.quota.remaining_header
        if remaining and self.quota and response.headers.get(remaining, "").isdigit():
            self.quota.follow_server(int(response.headers[remaining]))
        if (status == 429 or server.exhausted) and server.pause_for:
            limiter.pause(server.pause_for)
        if status in RETRY_STATUSES:
            breaker.after_request(success=status == 429)
            wait = server.pause_for if status == 429 else server.retry_after
            return f"HTTP {status} from {self._path(request)}: {self._server_message(response)}", wait
        if status >= 400:
            breaker.after_request(success=True)  # the endpoint is up; the request was wrong
            raise ApiError(
                f"{where}: HTTP {status} from {self._path(request)}: {self._server_message(response)}", status
            )
        try:
            body = response.json()
        except ValueError:
            self.stats.count_status("bad body")
            breaker.after_request(success=False)
            return f"a body that is not JSON from {self._path(request)} ({response.text[:80]!r})", None
        breaker.after_request(success=True)
        return (body, response.links), None

    def _path(self, request: PageRequest) -> str:
        return request.url.removeprefix(self.base_url)

    def _server_message(self, response: requests.Response) -> str:
        try:
            body = response.json()
            message = body.get("error") or body.get("message") if isinstance(body, dict) else None
        except ValueError:
            message = None
        text = str(message or response.text[:200] or response.reason)
        return text.replace(self._token, "***") if self._token else text

    def close(self) -> None:
        self._session.close()

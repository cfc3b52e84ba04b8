"""The HTTP client: sends through the endpoint's guard, classifies, retries, paginates.

Request path: guard (quota -> circuit -> rate) -> send -> classify (ok /
429 wait / retry / fail) -> the guard learns from the answer. Pages stream
one at a time; a day is never held whole.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import requests

from rl_pipeline import reachability, wire
from rl_pipeline.clock import SYSTEM_CLOCK, Clock
from rl_pipeline.errors import ApiError, Blocked, MissingTokenError, PaginationError, QuotaExhausted
from rl_pipeline.events import EventSink, ignore
from rl_pipeline.guard import ApiShared, EndpointGuard, Waited
from rl_pipeline.pace import LearnedPace
from rl_pipeline.pagination import PageRequest, dig, first_page, next_page, outline
from rl_pipeline.quota import Forecast, QuotaLedger, QuotaPolicy, Usage, forecast
from rl_pipeline.retry import RetryPolicy
from rl_pipeline.sources import ApiSpec, EndpointSpec
from rl_pipeline.state import StateStore

RETRY_STATUSES = frozenset({500, 502, 503, 504})  # and 429, which is a wait rather than a failure
BROKEN_BODY = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
UNREACHABLE_AFTER = 3  # connection failures in a row, with no answer ever, that fail the request at once


@dataclass
class RequestStats:
    """What the client did, for materialization metadata. Thread-safe."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # answers refused by the rate limit: 429s (and 403s saying so)
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
    where: str  # "source api.endpoint, partition 2024-01-01, page 3": what every error about it names
    request: PageRequest
    records: list[dict[str, Any]]
    next: PageRequest | None
    total: int | None = None  # the day's record count, where the API reports one
    headers: Mapping[str, str] = field(default_factory=dict)  # its response's


def json_body(response: requests.Response) -> Any:
    """The response's JSON, decoded by its declared charset, else as UTF-8 (what JSON must be), else as
    Windows-1252/Latin-1, the charsets of bodies that are not UTF-8 and do not say so: their letters are
    kept (requests would read them as UTF-8 and put U+FFFD in their place; guessing the charset from a
    short body picks Baltic or Cyrillic code pages as often as the right one)."""
    if "charset=" in response.headers.get("Content-Type", "").lower():
        return response.json()
    for charset in ("utf-8", "cp1252"):
        try:
            return json.loads(response.content.decode(charset))
        except UnicodeDecodeError:
            continue
    return json.loads(response.content.decode("latin-1"))


def _origin(url: str) -> str:
    """`https://api.example.com:443`: where a request goes, as far as who may see its token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def credential_fingerprint(token: str | None) -> str:
    """A short, non-reversible name for a credential: budgets are per API + credential."""
    return hashlib.sha256((token or "").encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Prepared:
    """A request ready to send, the proxy/TLS settings it goes with, and whether the session calls the
    hooks at its write (a session built by `wire`, and no proxy)."""

    request: requests.PreparedRequest
    settings: dict[str, Any]
    hooked: bool


@dataclass(frozen=True)
class Answer:
    """What one try of a request got: a body, or why another try is worth it."""

    body: Any = None
    links: dict[str, dict[str, str]] = field(default_factory=dict)
    problem: str | None = None  # set when the try failed in a way worth retrying
    retry_after: float | None = None  # the server's floor for the next try
    throttled: bool = False  # refused by the rate limit (a 429): a wait, not a failed attempt
    headers: Mapping[str, str] = field(default_factory=dict)


class ApiClient:
    """One API, one credential, one `requests.Session`; sends and paginates.

    Whether a request may go, and what its answer teaches, is the business of
    the endpoint's guard (`rl_pipeline.guard`), shared by every worker through the store.
    """

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
        on_event: EventSink = ignore,
    ) -> None:
        if spec.token_env and not token:
            raise MissingTokenError(f"source {name}: no API token; set the environment variable {spec.token_env}")
        if token and (not token.isprintable() or token != token.strip()):
            # A token read from a file keeps its line end; requests would quote the whole header in its error.
            raise MissingTokenError(
                f"source {name}: the token in {spec.token_env or 'the token variable'} has surrounding spaces "
                "or a control character (a line end from a secrets file?); strip it"
            )
        self.name = name
        self.spec = spec
        self.base_url = spec.resolved_base_url()
        self.store = store
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.timeout = timeout
        self.stats = RequestStats()
        self.on_event = on_event
        self._token = token
        self._session = session or wire.stamped_session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._rng = random.Random()
        self._unreachable = 0  # connection failures in a row while the host has never answered
        self.shared = ApiShared(name, spec, store, f"{name}:{credential_fingerprint(token)}", clock)
        self._guards: dict[str, EndpointGuard] = {}

    def __repr__(self) -> str:
        return f"ApiClient({self.name!r}, base_url={self.base_url!r}, store={self.store!r})"

    @property
    def quota(self) -> QuotaLedger | None:
        return self.shared.quota

    @property
    def pace(self) -> LearnedPace:
        return self.shared.pace

    def guard(self, endpoint: str) -> EndpointGuard:
        """The endpoint's guard: quota, circuit breaker, limits and the learned pace."""
        if endpoint not in self._guards:
            self._guards[endpoint] = EndpointGuard(
                self.shared, endpoint, rng=self._rng, on_event=self.on_event, max_pause=self.retry.deadline
            )
        return self._guards[endpoint]

    def rate_per_second(self) -> float:
        """The rate requests go at now (the learned pace): what forecasts assume."""
        return self.pace.rate()

    def forecast(self, partitions: int, requests_per_partition: float) -> Forecast:
        """When `partitions` more partitions will be done at `requests_per_partition` each: at the pace
        requests go now, never past the quotas less the daily `reserve` kept for the schedule."""
        now, quota = self.clock.now(), self.spec.quota
        if self.quota is None or quota is None:
            usage, policy, reserve = Usage(0, 0, math.inf, math.inf, now, now), QuotaPolicy(), 0
        else:
            usage, policy, reserve = self.quota.usage(), self.quota.policy, quota.reserve
        cost = max(1.0, requests_per_partition)
        return forecast(partitions, cost, self.rate_per_second(), usage, policy, now, reserve)

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
            answer = self.get_json(endpoint, request, where)
            body = answer.body
            records = dig(body, spec.records_path)
            if not isinstance(records, list):
                raise PaginationError(
                    f"{where}: expected a list of records at {spec.records_path or 'the top level'!r} "
                    f"(records_path), got {outline(records) if records is not None else 'nothing'}; "
                    f"the body is {outline(body)}"
                )
            try:
                following = next_page(spec.pagination, request, body, records, answer.links)
            except PaginationError as exc:
                raise PaginationError(f"{where}: {exc}") from None
            if following is not None and _origin(following.url) != _origin(self.base_url):
                raise PaginationError(
                    f"{where}: the next page is at {_origin(following.url)}, not {_origin(self.base_url)}; "
                    "not followed (the API's token would go with it)"
                )
            total = dig(body, getattr(spec.pagination, "total_path", None))
            total = total if isinstance(total, int) else None
            yield Page(number, where, request, records, following, total, answer.headers)
            request = following

    def get_json(self, endpoint: str, request: PageRequest, where: str) -> Answer:
        """GET one page through the endpoint's guard, retrying what is worth retrying; return its answer.

        A 429 is a wait, not a failed attempt: while the server keeps answering
        429, only `request_deadline` bounds the request. Other failures (5xx,
        timeouts, broken bodies) use up `max_attempts`, with backoff between them.
        """
        guard = self.guard(endpoint)
        started = self.clock.now()
        failures, previous_delay = 0, 0.0
        prepared = self._prepare(request)
        while True:
            admitted = self._admit(guard, started, where)
            self.stats.add(requests=1)
            answer = self._try_once(prepared, request, where, guard, admitted, started)
            if answer.problem is None:
                return answer
            if answer.throttled:
                self.stats.add(retries=1)
                if self.clock.now() - started > self.retry.deadline:
                    raise ApiError(f"{where}: {answer.problem}; still refused after {self.retry.deadline:g}s")
                continue  # the guard has paused everyone and lowered the pace
            failures += 1
            if failures == self.retry.max_attempts:
                raise ApiError(f"{where}: {answer.problem}; gave up after {self.retry.max_attempts} attempts")
            delay = self.retry.delay(
                failures - 1, previous=previous_delay, retry_after=answer.retry_after, rng=self._rng
            )
            if self.clock.now() + delay - started > self.retry.deadline:
                raise ApiError(
                    f"{where}: {answer.problem}; the next retry would pass the {self.retry.deadline:g}s deadline"
                )
            previous_delay = delay
            self.stats.add(retries=1, retry_wait_s=delay)
            self.on_event(
                "retry", f"{where}: {answer.problem}; try {failures + 1} of {self.retry.max_attempts} in {delay:.1f}s"
            )
            self.clock.sleep(delay)

    def _admit(self, guard: EndpointGuard, started: float, where: str) -> Waited:
        """Wait until quota and circuit let a request go (the probe: and the rate); return what it waited."""
        try:
            waited = guard.admit(started, self.retry.deadline)
        except QuotaExhausted as exc:
            raise exc.at(where) from None
        except Blocked as exc:
            raise ApiError(f"{where}: {exc}") from None
        self.stats.add(quota_wait_s=waited.quota, circuit_wait_s=waited.circuit, limiter_wait_s=waited.limiter)
        return waited

    def _prepare(self, request: PageRequest) -> Prepared:
        """The request built, with the environment's settings, before it waits for a grant: building it
        reads files and the environment, and each such call lets another thread in between grant and send."""
        prepared = self._session.prepare_request(requests.Request("GET", request.url, params=request.params))
        settings = self._session.merge_environment_settings(prepared.url, {}, None, None, None)
        return Prepared(prepared, settings, wire.calls_hooks(self._session, prepared.url, settings["proxies"]))

    def _try_once(
        self,
        prepared: Prepared,
        request: PageRequest,
        where: str,
        guard: EndpointGuard,
        admitted: Waited,
        started: float,
    ) -> Answer:
        """Take the rate's grant at the write, send once and classify the answer; raise ApiError for a 4xx
        that no retry can fix."""
        granted_at, held = admitted.granted_at, 0.0

        def grant() -> None:
            nonlocal granted_at, held
            reached = self.clock.now()
            granted_at = guard.grant(started, self.retry.deadline)
            held = self.clock.now() - reached

        def written() -> None:
            if granted_at is not None:  # else the connection failed before the grant: nothing was sent
                guard.written(granted_at)

        try:
            if granted_at is None and not prepared.hooked:
                grant()  # the session will not call it at the write: as close to it as this side gets
            with wire.on_written(written, before=grant if granted_at is None else None):
                response = self._session.send(prepared.request, timeout=self.timeout, **prepared.settings)
        except Blocked as exc:
            raise ApiError(f"{where}: {exc}") from None
        except BROKEN_BODY as exc:  # the server answered, and the body broke on the way
            self.stats.count_status(type(exc).__name__)
            reachability.answered(self.base_url)
            guard.on_failure(admitted.probe)
            return Answer(problem=f"a broken body ({type(exc).__name__}) from {self._path(request)}")
        except (requests.Timeout, requests.ConnectionError) as exc:
            return self._unanswered(exc, request, where, guard, admitted.probe)
        finally:
            self.stats.add(limiter_wait_s=held)
        reachability.answered(self.base_url)
        self.stats.count_status(str(response.status_code))
        return self._classify(response, request, where, guard, admitted.probe)

    def _unanswered(
        self, exc: requests.RequestException, request: PageRequest, where: str, guard: EndpointGuard, probe: str
    ) -> Answer:
        """A timeout or a failed connection: worth another try, unless the host has never answered at all."""
        self.stats.count_status(type(exc).__name__)
        guard.on_failure(probe)
        if not isinstance(exc, requests.ReadTimeout):
            reachability.not_connected(self.base_url)
        self._unreachable = self._unreachable + 1 if reachability.never_reached(self.base_url) else 0
        if self._unreachable >= UNREACHABLE_AFTER:
            raise ApiError(
                f"{where}: cannot reach {self.base_url}: {reachability.connection_cause(exc)} "
                "(it has not answered once since this run started)"
            ) from None
        return Answer(problem=f"{type(exc).__name__} from {self._path(request)}")

    def _classify(
        self, response: requests.Response, request: PageRequest, where: str, guard: EndpointGuard, probe: str
    ) -> Answer:
        """An HTTP answer: a body, a 429 to wait out, a status worth retrying, or (raised) one that is not."""
        status = response.status_code
        if status >= 400:
            heard = guard.on_answer(status, response.headers, probe=probe)
            problem = f"HTTP {status} from {self._path(request)}: {self._server_message(response)}"
            if heard.rate_limited:
                self.stats.add(rate_limited=1)
                return Answer(problem=problem, throttled=True)
            if status in RETRY_STATUSES:
                return Answer(problem=problem, retry_after=heard.retry_after)
            raise ApiError(f"{where}: {problem}", status)
        try:
            body = json_body(response)
        except ValueError:
            self.stats.count_status("bad body")
            guard.on_answer(status, response.headers, healthy=False, probe=probe)
            return Answer(
                problem=f"a body that is not JSON from {self._path(request)} ({self._masked(response.text[:80])!r})"
            )
        guard.on_answer(status, response.headers, probe=probe)
        return Answer(body=body, links=response.links, headers=response.headers)

    def _path(self, request: PageRequest) -> str:
        return request.url.removeprefix(self.base_url)

    def _server_message(self, response: requests.Response) -> str:
        try:
            body = response.json()
            message = body.get("error") or body.get("message") if isinstance(body, dict) else None
        except ValueError:
            message = None
        return self._masked(str(message or response.text[:200] or response.reason))

    def _masked(self, text: str) -> str:
        """`text` with the token starred out: servers and proxies echo request headers back."""
        return text.replace(self._token, "***") if self._token else text

    def close(self) -> None:
        self._session.close()

"""The demo API server (stdlib `http.server`, HTTP/1.1 keep-alive).

Endpoints, one per pagination style, all serving the same dataset:
- GET /v1/offset/events?date=YYYY-MM-DD&offset=&limit=         -> {"data", "total"}
- GET /v1/pages/events?start=ISO&end=ISO&page=&per_page=       -> {"items", "page", "total_pages"}
- GET /v1/cursor/events?created_gte=EPOCH&created_lt=EPOCH&limit=&cursor=  -> {"data", "has_more", "next_cursor"}
- GET /v1/link/events?day=YYYY-MM-DD&page=&per_page=           -> [...] with a `Link: <...>; rel="next"` header

Like a strict third-party API it wants `Authorization: Bearer <token>` (401),
rejects malformed parameters (400), enforces a rate limit with the algorithm
chosen at start (`demo_api/limits.py`: token or leaky bucket, fixed or
sliding window; refused requests counted or not; 429 with `Retry-After` or
without, or 403 as GitHub answers) and a daily quota (429 saying so), and sends
`X-RateLimit-Limit/-Remaining/-Reset` on every response unless told not to
(Reset in seconds until Remaining next grows).

Out of band, for tests and benchmarks, with the same bearer token: GET
/_admin/stats (what was served, with arrival times), POST /_admin/reset, and
POST /_admin/faults with a JSON object of `Faults` switches (plus
`outage_seconds`), each checked for its type.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from rl_pipeline.demo_api.data import day_start, range_records, served_records
from rl_pipeline.demo_api.faults import Faults
from rl_pipeline.demo_api.limits import ServerAlgorithm, ServerLimit

MAX_PAGE_SIZE = 100
MAX_ADMIN_BODY = 1_000_000  # bytes of a fault switch body, at most
SO_TIMESTAMP = 29  # Linux's socket option (and control message) for receive stamps (a timeval)


@dataclass
class DemoApiConfig:
    """How the demo API behaves; the defaults are what `make demo` serves and the shipped sources file says."""

    rate: float = 20.0  # requests per `period`
    burst: int = 20  # token bucket: tokens at most; leaky bucket: 1 + requests allowed early
    period: float = 1.0
    algorithm: ServerAlgorithm = "token_bucket"
    count_refused: bool = False  # refused requests count against the limit too
    retry_after: bool = True  # a 429 says when to come back
    limit_status: int = 429  # 403: refused requests answered as GitHub does, 403 with X-RateLimit-Remaining: 0
    daily_quota: int = 50_000
    seed: int = 42
    token: str = "demo-token"
    limit_headers: bool = True  # False: an API that publishes nothing about its limit
    faults: Faults = field(default_factory=Faults)

    def limit(self, now: float) -> ServerLimit:
        return ServerLimit(self.algorithm, self.rate, self.period, self.burst, self.count_refused, now)


class BadRequest(ValueError):
    pass


class DemoApi:
    """State shared by all handler threads: limits, quota and what was served."""

    def __init__(self, config: DemoApiConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.rng = random.Random(self.config.faults.seed)
            self.limit = self.config.limit(time.time())
            self.quota_day: date | None = None
            self.quota_used = 0
            self.log: list[tuple[float, int, str]] = []
            self.faults_served: Counter[str] = Counter()

    def admit(self, arrived: float) -> tuple[int, dict[str, str], str | None]:
        """Charge one request that reached the host at `arrived`: (status, headers, error message or None)."""
        with self.lock:
            today = datetime.now(UTC).date()
            if self.quota_day != today:
                self.quota_day, self.quota_used = today, 0
            reset_at = day_start(today + timedelta(days=1))
            quota_headers = {
                "X-Quota-Limit": str(self.config.daily_quota),
                "X-Quota-Remaining": str(max(0, self.config.daily_quota - self.quota_used - 1)),
                "X-Quota-Reset": str(int(reset_at.timestamp())),
            }
            if self.quota_used >= self.config.daily_quota:
                headers = quota_headers | {"Retry-After": str(math.ceil(reset_at.timestamp() - time.time()))}
                message = (
                    f"daily quota of {self.config.daily_quota} requests exceeded; "
                    f"resets at {reset_at.isoformat().replace('+00:00', 'Z')}"
                )
                return 429, headers | self._limit_headers(), message
            granted, wait = self.limit.admit(arrived)
            headers = self._limit_headers() | quota_headers
            if not granted:
                headers["X-Quota-Remaining"] = str(self.config.daily_quota - self.quota_used)
                if self.config.retry_after:
                    headers["Retry-After"] = str(max(1, math.ceil(wait)))
                if self.config.limit_status == 403:
                    headers["X-RateLimit-Remaining"] = "0"  # all that tells this 403 from a forbidden one
                message = f"rate limit of {self.config.rate:g} requests per {self.config.period:g}s exceeded"
                return self.config.limit_status, headers, message
            self.quota_used += 1
            return 200, headers, None

    def _limit_headers(self) -> dict[str, str]:
        return self.limit.headers(time.time()) if self.config.limit_headers else {}

    def draw_fault(self) -> str | None:
        """Which random fault, if any, this request meets."""
        faults = self.config.faults
        with self.lock:
            roll = self.rng.random()
            for name in ("error", "slow", "hang", "truncated", "html"):
                rate = getattr(faults, f"{name}_rate")
                if roll < rate:
                    self.faults_served[name] += 1
                    return name
                roll -= rate
        return None

    def record(self, arrived: float, status: int, path: str) -> None:
        """Log a request by the time it arrived (epoch seconds), not when its answer was ready."""
        with self.lock:
            self.log.append((arrived, status, path))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "by_status": dict(Counter(str(status) for _, status, _ in self.log)),
                "most_in_any_second": most_in_any_window([t for t, _, _ in self.log]),
                "requests": [list(entry) for entry in self.log],
                "quota_used": self.quota_used,
                "faults": dict(self.faults_served),
            }


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most of `times` in any half-open window [t, t + window): what a client sent at its worst."""
    times = sorted(times)
    j = best = 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def _one(params: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = params.get(name)
    if not values:
        if default is None:
            raise BadRequest(f"missing query parameter {name!r}")
        return default
    return values[0]


def _int(params: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    raw = _one(params, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _day(params: dict[str, list[str]], name: str) -> date:
    raw = _one(params, name)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a date YYYY-MM-DD, got {raw!r}") from None


def _timestamp(params: dict[str, list[str]], name: str, parse) -> datetime:
    raw = _one(params, name)
    try:
        value = parse(raw)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} is not a valid timestamp: {raw!r}") from None
    if value.tzinfo is None:
        raise BadRequest(f"{name} must carry a time zone: {raw!r}")
    return value


def _range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if not start < end or end - start > timedelta(days=31):
        raise BadRequest("the time range must be non-empty and at most 31 days long")
    return start, end


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; don't stall 40 ms on the ACK
    timeout = 75  # seconds a connection may sit idle or half-sent before it is closed (nginx's keepalive_timeout)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the stats endpoint is the log

    def _authorized(self) -> bool:
        """The API's own bearer token, on every endpoint the admin ones included; a 401 otherwise."""
        if self.headers.get("Authorization") == f"Bearer {self.server.api.config.token}":
            return True
        self._send(401, {"error": "missing or invalid bearer token"})
        return False

    def _json_body(self) -> Any:
        """The request's JSON body; BadRequest for a length that is missing, negative or over 1 MB."""
        raw = self.headers.get("Content-Length", "0")
        if not raw.isdigit() or int(raw) > MAX_ADMIN_BODY:
            raise BadRequest(f"Content-Length must be 0..{MAX_ADMIN_BODY}, got {raw!r}")
        return json.loads(self.rfile.read(int(raw)) or b"{}")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not self._authorized():
            return
        if path == "/_admin/reset":
            self.server.api.reset()
            self._send(200, {"reset": True})
        elif path == "/_admin/faults":
            try:
                changes = self._json_body()
                if not isinstance(changes, dict):
                    raise BadRequest("the body must be a JSON object of fault switches")
                if "outage_seconds" in changes:
                    changes["outage_until"] = time.time() + float(changes.pop("outage_seconds"))
                self.server.api.config.faults.update(changes)
            except (ValueError, TypeError, BadRequest) as exc:
                self._send(400, {"error": str(exc)})
                return
            self._send(200, {"faults": changes})
        else:
            self._send(404, {"error": "not found"})

    def handle_one_request(self) -> None:
        self.arrived = self._arrival()
        super().handle_one_request()

    def _arrival(self) -> float:
        """When the next request reached this host, stamped by the kernel (epoch seconds).

        A real server decides on arrival, in C; this one is Python, whose
        threads may wait milliseconds for the interpreter before they read a
        request. Deciding on the kernel's stamp keeps that wait out of the limit.
        """
        try:
            _, ancillary, _, _ = self.connection.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
        except OSError:
            return time.time()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= 16:
                seconds, microseconds = struct.unpack("qq", data[:16])
                return seconds + microseconds / 1e6
        return time.time()

    def do_GET(self) -> None:
        arrived = self.arrived
        url = urlsplit(self.path)
        api = self.server.api
        if url.path == "/_admin/stats":
            if self._authorized():
                self._send(200, api.stats())
            return
        route = _ROUTES.get(url.path)
        fault = None
        if route is None:
            status, body, headers = 404, {"error": f"no endpoint {url.path}"}, {}
        elif time.time() < api.config.faults.outage_until:
            status, body, headers = 503, {"error": "service unavailable (outage)"}, {}
        elif self.headers.get("Authorization") != f"Bearer {api.config.token}":
            status, body, headers = 401, {"error": "missing or invalid bearer token"}, {}
        else:
            status, headers, message = api.admit(arrived)
            body = {"error": message}
            fault = api.draw_fault() if status == 200 else None
            if fault == "error":
                status = random.choice([500, 502, 503, 504])
                body = {"error": "internal error (injected)"}
            elif status == 200:
                try:
                    body, extra = route(api, parse_qs(url.query, keep_blank_values=True), url.path)
                    headers |= extra
                except BadRequest as exc:
                    status, body = 400, {"error": str(exc)}
        api.record(arrived, status, url.path)
        if fault in ("slow", "hang"):
            time.sleep(getattr(api.config.faults, f"{fault}_seconds"))
        if fault == "truncated":  # the connection drops half way through the body it announced
            payload = json.dumps(body, ensure_ascii=False).encode()
            self._send_raw(status, payload, "application/json; charset=utf-8", headers, cut=len(payload) // 2)
            self.close_connection = True
        elif fault == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
            self._send_raw(200, page, "text/html", headers)
        else:
            self._send(status, body, headers)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(
            status, json.dumps(body, ensure_ascii=False).encode(), "application/json; charset=utf-8", headers
        )

    def _send_raw(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        cut: int | None = None,
    ) -> None:
        """Answer `payload`; with `cut`, only its first `cut` bytes, though the header announces them all."""
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Date", self.date_time_string())
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload[:cut])


Page = tuple[Any, dict[str, str]]


def _offset(api: DemoApi, params: dict[str, list[str]], path: str) -> Page:
    records = served_records(api.config.seed, _day(params, "date"), api.config.faults)
    offset = _int(params, "offset", 0, 0, 10**9)
    limit = _int(params, "limit", 50, 1, MAX_PAGE_SIZE)
    return {"data": list(records[offset : offset + limit]), "total": len(records)}, {}


def _pages(api: DemoApi, params: dict[str, list[str]], path: str) -> Page:
    start, end = _range(
        _timestamp(params, "start", datetime.fromisoformat), _timestamp(params, "end", datetime.fromisoformat)
    )
    records = range_records(api.config.seed, start, end, api.config.faults)
    page = _int(params, "page", 1, 1, 10**6)
    per_page = _int(params, "per_page", 50, 1, MAX_PAGE_SIZE)
    body = {
        "items": records[(page - 1) * per_page : page * per_page],
        "page": page,
        "total_pages": math.ceil(len(records) / per_page),
    }
    return body, {}


def _epoch(raw: str) -> datetime:
    return datetime.fromtimestamp(int(raw), UTC)


def _cursor(api: DemoApi, params: dict[str, list[str]], path: str) -> Page:
    faults = api.config.faults
    start, end = _range(_timestamp(params, "created_gte", _epoch), _timestamp(params, "created_lt", _epoch))
    records = range_records(api.config.seed, start, end, faults)
    limit = _int(params, "limit", 50, 1, MAX_PAGE_SIZE)
    raw_cursor = _one(params, "cursor", "")
    try:
        offset = int(base64.urlsafe_b64decode(raw_cursor.encode()).decode().removeprefix("o:")) if raw_cursor else 0
    except ValueError:
        raise BadRequest(f"invalid cursor {raw_cursor!r}") from None
    has_more = offset + limit < len(records)
    following = offset + limit - min(faults.repeat, limit - 1)
    if faults.cursor_loop_after and offset // limit + 1 >= faults.cursor_loop_after:
        following = 0
    next_cursor = base64.urlsafe_b64encode(f"o:{following}".encode()).decode() if has_more else None
    return {"data": records[offset : offset + limit], "has_more": has_more, "next_cursor": next_cursor}, {}


def _link(api: DemoApi, params: dict[str, list[str]], path: str) -> Page:
    day = _day(params, "day")
    records = served_records(api.config.seed, day, api.config.faults)
    page = _int(params, "page", 1, 1, 10**6)
    per_page = _int(params, "per_page", 30, 1, MAX_PAGE_SIZE)
    headers = {}
    if page * per_page < len(records):
        query = urlencode({"day": day.isoformat(), "page": page + 1, "per_page": per_page})
        headers["Link"] = f'<{path}?{query}>; rel="next"'
    first = (page - 1) * per_page - (min(api.config.faults.repeat, per_page - 1) if page > 1 else 0)
    return list(records[first : page * per_page]), headers


_ROUTES = {
    "/v1/offset/events": _offset,
    "/v1/pages/events": _pages,
    "/v1/cursor/events": _cursor,
    "/v1/link/events": _link,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: DemoApi) -> None:
        super().__init__(address, Handler)
        self.api = api

    def server_bind(self) -> None:
        # Linux: the kernel stamps each packet as it arrives. Set on the listening socket, every accepted
        # connection has it from its first packet: set after `accept`, a new connection's first request,
        # already queued, came unstamped and was judged by when a thread got to it.
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        super().server_bind()


class DemoApiServer:
    """The demo API on a real socket, served from a background thread.

    Port 0 picks a free port; `url` says which one was taken.
    """

    def __init__(self, config: DemoApiConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = DemoApi(config or DemoApiConfig())
        self._server = _Server((host, port), self.api)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DemoApiServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-api", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> DemoApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

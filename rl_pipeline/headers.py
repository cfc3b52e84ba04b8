"""What a response says about the server's limit, from its headers.

Understands `Retry-After` (seconds or HTTP date) and `Retry-After-Ms`,
`X-RateLimit-Limit/-Remaining/-Reset` and their spellings (`X-Rate-Limit-*`,
OpenAI's `-Requests` suffix; a reset as epoch seconds, milli- or microseconds,
or seconds until: detected from the size of the number; as a duration like
`6m0s`; or as an ISO 8601 or HTTP date), Discord's `X-RateLimit-Reset-After`,
the IETF drafts' `RateLimit` (`limit=, remaining=, reset=` or `"name";r=;t=`)
with `RateLimit-Policy` (`q=`, `w=`) and the older `RateLimit-Limit/
-Remaining/-Reset`. Times are corrected for clock skew with the response's
`Date`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_EPOCH_US = 1e15  # a reset this large is epoch microseconds
_EPOCH_MS = 1e12  # this large, epoch milliseconds
_EPOCH_S = 1e9  # this large, epoch seconds; smaller, seconds from now
_PARAM = re.compile(r"([A-Za-z_-]+)\s*=\s*\"?([0-9.]+)\"?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# Each field's spellings, the most common first.
_LIMIT = ("X-RateLimit-Limit", "X-Rate-Limit-Limit", "RateLimit-Limit", "X-RateLimit-Limit-Requests")
_REMAINING = (
    "X-RateLimit-Remaining", "X-Rate-Limit-Remaining", "RateLimit-Remaining", "X-RateLimit-Remaining-Requests",
)  # fmt: skip
_RESET = ("X-RateLimit-Reset", "X-Rate-Limit-Reset", "RateLimit-Reset", "X-RateLimit-Reset-Requests")


@dataclass(frozen=True)
class ServerLimit:
    """The server's view, in seconds from now on our clock."""

    retry_after: float | None = None
    limit: float | None = None
    remaining: float | None = None
    reset_in: float | None = None
    window: float | None = None  # the policy's window in seconds, when published

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0 and bool(self.reset_in)

    @property
    def pause_for(self) -> float | None:
        """How long nobody should send, if the server said so."""
        if self.retry_after is not None:
            return self.retry_after
        return self.reset_in if self.exhausted else None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _date(value: str) -> float | None:
    """An HTTP date or an ISO 8601 one (`2026-08-02T22:31Z`; UTC when it names no zone), as epoch seconds."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return _http_date(value)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _duration(value: str) -> float | None:
    """A Go-style duration (`6m0s`, `1.5s`, `250ms`, as OpenAI's reset headers are) in seconds."""
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    seconds = sum(float(number) * _DURATION_UNIT[unit] for number, unit in parts)
    return seconds if math.isfinite(seconds) else None


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((headers[name] for name in names if headers.get(name)), None)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip().split(",")[0])
    except ValueError:
        return None
    return number if math.isfinite(number) else None  # `Retry-After: inf` says nothing usable


def _reset_seconds(value: str | float | None, server_now: float) -> float | None:
    """A reset as seconds from now: a number (its size says epoch seconds, milli- or microseconds, or
    seconds until), a duration (until), or a date."""
    raw = _number(value) if isinstance(value, str) else value
    if raw is None and isinstance(value, str):  # not a number: a duration (until), or a date
        until, when = _duration(value), _date(value)
        if until is not None or when is None:
            return until
        return max(0.0, when - server_now)
    if raw is None:
        return None
    if raw >= _EPOCH_US:
        return max(0.0, raw / 1e6 - server_now)
    if raw >= _EPOCH_MS:
        return max(0.0, raw / 1000 - server_now)
    if raw >= _EPOCH_S:
        return max(0.0, raw - server_now)
    return max(0.0, raw)


def _numbers(text: str) -> dict[str, float]:
    """The `key=number` parameters of `text`; a value that is not a number (`v=1.2.3`) is left out."""
    found = {}
    for key, raw in _PARAM.findall(text):
        try:
            number = float(raw)
        except ValueError:
            continue
        if math.isfinite(number):  # 400 digits read as inf: says nothing usable
            found[key.lower()] = number
    return found


def _items(value: str | None) -> list[dict[str, float]]:
    """A `RateLimit`/`RateLimit-Policy` header as one parameter dict per limit it lists: draft 9's
    `"burst";r=50;t=1, "daily";r=0;t=3600` is two; draft 7's `limit=100, remaining=0, reset=7` is one."""
    parts = [part for part in (value or "").split(",") if part.strip()]
    if not any(";" in part for part in parts):
        return [_numbers(value or "")] if parts else []
    return [_numbers(part) for part in parts]


def _tightest(items: list[dict[str, float]], key: object) -> dict[str, float]:
    return min(items, key=key) if items else {}  # type: ignore[arg-type]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date (past dates give 0)."""
    if value is None or not value.strip():
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    when = _http_date(value)
    return None if when is None else max(0.0, when - now)


def read_server_limit(headers: Mapping[str, str], now: float) -> ServerLimit:
    """Everything the headers say about the limit; absent fields are None.

    `headers` must look names up case-insensitively, as `requests` does.
    """
    server_now = _http_date(headers.get("Date"))
    # An HTTP date is whole seconds; only a larger gap is a skew worth correcting.
    skewed = server_now is not None and abs(server_now - now) > 1.0
    reference = server_now if skewed and server_now is not None else now
    retry_after = headers.get("Retry-After")
    # An HTTP date from a skewed server is measured against the server's own clock.
    is_date = retry_after is not None and _number(retry_after) is None
    retry = parse_retry_after(retry_after, reference if is_date else now)
    retry_ms = _number(_first(headers, ("Retry-After-Ms", "X-Ms-Retry-After-Ms")))  # the same wait, not rounded
    limit, remaining, reset, window = _limit_fields(headers)
    reset_after = _number(headers.get("X-RateLimit-Reset-After"))  # seconds until: no clock to correct
    return ServerLimit(
        retry_after=retry if retry_ms is None else max(0.0, retry_ms / 1000),
        limit=limit,
        remaining=remaining,
        reset_in=_reset_seconds(reset, reference) if reset_after is None else max(0.0, reset_after),
        window=window,
    )


def _limit_fields(
    headers: Mapping[str, str],
) -> tuple[float | None, float | None, str | float | None, float | None]:
    """(limit, remaining, reset, window) from the X-RateLimit-* headers or the IETF draft's fields; the reset
    as the header gave it."""
    limit = _number(_first(headers, _LIMIT))
    remaining = _number(_first(headers, _REMAINING))
    reset: str | float | None = _first(headers, _RESET)
    window = None
    # Of several limits the tightest decides: the least remaining (the longest reset among equals), and the
    # policy with the lowest rate.
    combined = _tightest(
        _items(headers.get("RateLimit")),
        key=lambda p: (p.get("remaining", p.get("r", math.inf)), -p.get("reset", p.get("t", 0.0))),
    )
    if combined:
        limit = combined.get("limit", limit)
        remaining = combined.get("remaining", combined.get("r", remaining))
        reset = combined.get("reset", combined.get("t", reset))
    policy = _tightest(
        _items(headers.get("RateLimit-Policy")), key=lambda p: p.get("q", math.inf) / max(p.get("w", 1.0), 1e-9)
    )
    if policy:
        limit = policy.get("q", limit)
        window = policy.get("w")
    return limit, remaining, reset, window

"""What a response says about the server's limit, from its headers.

Understands `Retry-After` (seconds or HTTP date), `X-RateLimit-Limit/
-Remaining/-Reset` (reset as epoch seconds, milli- or microseconds, or seconds
until: detected from the size of the number), the IETF drafts' `RateLimit`
(`limit=, remaining=, reset=` or `"name";r=;t=`) with `RateLimit-Policy`
(`q=`, `w=`) and the older `RateLimit-Limit/-Remaining/-Reset`. Times are
corrected for clock skew with the response's `Date`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

_EPOCH_US = 1e15  # a reset this large is epoch microseconds
_EPOCH_MS = 1e12  # this large, epoch milliseconds
_EPOCH_S = 1e9  # this large, epoch seconds; smaller, seconds from now
_PARAM = re.compile(r"([A-Za-z_-]+)\s*=\s*\"?([0-9.]+)\"?")


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


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip().split(",")[0])
    except ValueError:
        return None
    return number if math.isfinite(number) else None  # `Retry-After: inf` says nothing usable


def _reset_seconds(raw: float | None, server_now: float) -> float | None:
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
            found[key.lower()] = float(raw)
        except ValueError:
            continue
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
    limit, remaining, reset, window = _limit_fields(headers)
    return ServerLimit(
        retry_after=retry,
        limit=limit,
        remaining=remaining,
        reset_in=_reset_seconds(reset, reference),
        window=window,
    )


def _limit_fields(headers: Mapping[str, str]) -> tuple[float | None, float | None, float | None, float | None]:
    """(limit, remaining, reset, window) from the X-RateLimit-* headers or the IETF draft's fields."""
    limit = _number(headers.get("X-RateLimit-Limit") or headers.get("RateLimit-Limit"))
    remaining = _number(headers.get("X-RateLimit-Remaining") or headers.get("RateLimit-Remaining"))
    reset = _number(headers.get("X-RateLimit-Reset") or headers.get("RateLimit-Reset"))
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

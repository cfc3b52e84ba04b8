"""Every error the product raises on purpose, under one base.

Each message is one line fit for the user: it names the source, partition
and page, the config field, or the file, and never a credential. Each also
derives from the built-in kind callers would expect (ValueError for bad
input, RuntimeError for a request that cannot go, TimeoutError for a wait).
"""

from __future__ import annotations

from rl_pipeline.clock import iso_time


class RlPipelineError(Exception):
    """The base of every error rl_pipeline raises on purpose."""


class SourceFileError(RlPipelineError, ValueError):
    """A sources file that cannot be used; the message names file and field."""


class UsageError(RlPipelineError, ValueError):
    """A bad command-line argument."""


class MissingTokenError(RlPipelineError, RuntimeError):
    """The environment variable holding an API's token is not set, or holds a malformed token."""


class ApiError(RlPipelineError, RuntimeError):
    """A request that failed for good: a non-retryable status, or retries spent."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PaginationError(RlPipelineError, ValueError):
    """The API's pagination cannot be followed (a loop, a missing field, another origin)."""


class Blocked(RlPipelineError, RuntimeError):
    """No request may go within the bounds set (an open circuit, the limiter past the deadline)."""


class RateLimitTimeout(RlPipelineError, TimeoutError):
    """The limiter could not grant a request within the caller's timeout."""


class CircuitOpen(RlPipelineError, RuntimeError):
    """The endpoint's circuit is open; `until` is when a probe may go."""

    def __init__(self, endpoint: str, until: float) -> None:
        super().__init__(f"circuit open for {endpoint} until {iso_time(until)}")
        self.endpoint, self.until = endpoint, until


class QuotaExhausted(RlPipelineError, RuntimeError):
    """A quota has no request left; it says which, how much was used and when it resets."""

    def __init__(
        self, api: str, which: str, used: int, limit: int, resets_at: float, where: str = "", own: int | None = None
    ) -> None:
        # `own`: what this store counted, where the server's count of what is left says more was used.
        counted = f"{used} used" if own is None or own >= used else f"{used} used by the server's count, {own} by ours"
        super().__init__(
            (f"{where}: " if where else "")
            + f"{which} quota of {limit} requests for {api} is used up ({counted}); resets at {iso_time(resets_at)}"
        )
        self.api, self.which, self.used, self.limit, self.resets_at, self.own = api, which, used, limit, resets_at, own

    def at(self, where: str) -> QuotaExhausted:
        """The same refusal, naming where it happened (source, partition, page)."""
        return QuotaExhausted(self.api, self.which, self.used, self.limit, self.resets_at, where, self.own)


class WarehouseError(RlPipelineError, RuntimeError):
    """A batch that cannot be written; nothing of it was written."""


class WarehouseBusy(WarehouseError):
    """Another process held the DuckDB file for longer than the patience allowed."""

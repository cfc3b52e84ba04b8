"""The state-store interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from rl_pipeline.clock import Clock
from rl_pipeline.limits.algorithms import Limit

T = TypeVar("T")


class StateStore(ABC):
    """Shared, atomic state for every worker that talks to one API.

    Rate-limit state is kept per namespace (one API + one credential).
    `acquire` decides several limits at once: either every limit grants
    `cost`, or none is charged and the longest wait is returned. A pause
    (set by `pause`, e.g. after a 429) holds every grant back until it ends.
    """

    url: str

    @abstractmethod
    def acquire(
        self, namespace: str, limits: Sequence[tuple[str, Limit]], cost: float, clock: Clock, *, dry_run: bool = False
    ) -> float:
        """Charge `cost` to every named limit and return 0.0, or charge none
        and return the seconds to wait. `dry_run` decides without charging.
        `clock` is read as late as the store allows (inside its lock, where it
        has one): a grant is stamped with when it was decided, not with when
        its caller started waiting for the store."""

    @abstractmethod
    def pause(self, namespace: str, until: float) -> None:
        """Hold back every grant in `namespace` until the epoch time `until`;
        a later pause already set is kept (pauses only ever lengthen)."""

    @abstractmethod
    def update(self, key: str, fn: Callable[[str | None], tuple[str | None, T]]) -> T:
        """Atomically replace the value at `key` (None when absent, None to delete)
        by the first of `fn(value)` and return the second: the caller's verdict on
        what it saw. `fn` must be pure: a store may call it more than once, and
        returns the verdict of the call whose value it stored."""

    @abstractmethod
    def get(self, key: str) -> str | None: ...

    @abstractmethod
    def set(self, key: str, value: str) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional for stores that hold nothing
        """Release connections; the store may not be used afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))

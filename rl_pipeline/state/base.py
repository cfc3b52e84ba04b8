"""The state-store interface and the URL that picks one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from rl_pipeline.limits.algorithms import Limit, decide


class StateStore(ABC):
    """Shared, atomic state for every worker that talks to one API.

    `acquire` decides several limits at once: either every limit grants
    `cost`, or none is charged and the longest wait is returned. A pause
    (set by `pause`, e.g. after a 429) holds every grant back until it ends.
    """

    url: str

    @abstractmethod
    def acquire(
        self,
        limits: Sequence[tuple[str, Limit]],
        cost: float,
        now: float,
        *,
        pause_key: str | None = None,
        dry_run: bool = False,
    ) -> float:
        """Charge `cost` to every `(key, limit)` and return 0.0, or charge none
        and return the seconds to wait. `dry_run` decides without charging."""

    @abstractmethod
    def pause(self, key: str, until: float) -> None:
        """Hold back grants under `key` until the epoch time `until`; a later
        pause already set is kept (pauses only ever lengthen)."""

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


def decide_all(
    states: Sequence[list[float] | None],
    limits: Sequence[Limit],
    now: float,
    cost: float,
    paused_until: float | None = None,
) -> tuple[float, list[list[float]] | None]:
    """The all-or-nothing rule shared by the Python-side stores.

    Returns (0.0, new states) when every limit grants, else (wait, None).
    """
    if paused_until is not None and now < paused_until:
        return paused_until - now, None
    verdicts = [decide(state, limit, now, cost) for state, limit in zip(states, limits, strict=True)]
    if all(v.granted for v in verdicts):
        return 0.0, [v.state for v in verdicts]
    return max(v.wait for v in verdicts if not v.granted), None


def open_store(url: str) -> StateStore:
    """Open the store a URL names; raise ValueError naming the URL otherwise."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from rl_pipeline.state.memory import MemoryStore

        return MemoryStore(url)
    if scheme == "sqlite":
        from rl_pipeline.state.sqlite import SqliteStore

        return SqliteStore(url)
    if scheme in ("redis", "rediss"):
        from rl_pipeline.state.redis import RedisStore

        return RedisStore(url)
    raise ValueError(
        f"state store URL {url!r}: unknown scheme {scheme!r} (use memory://, sqlite:///PATH or redis://HOST:PORT/DB)"
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))

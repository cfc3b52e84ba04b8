"""The state-store interface and the URL that picks one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from rl_pipeline.clock import Clock
from rl_pipeline.limits.algorithms import Limit, decide

Budget = dict[str, list[float]]  # limit name -> algorithm state; PAUSE -> [until]
PAUSE = "pause"


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
    def update(self, key: str, fn: Callable[[str | None], str | None]) -> str | None:
        """Atomically replace the value at `key` (None when absent) by `fn(value)`
        and return it. `fn` must be pure: a store may call it more than once."""

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


def decide_budget(
    budget: Budget, limits: Sequence[tuple[str, Limit]], now: float, cost: float
) -> tuple[float, Budget | None]:
    """The all-or-nothing rule of the Python-side stores.

    Returns (0.0, the new states by name) when every limit grants, else (wait, None).
    """
    paused = budget.get(PAUSE)
    if paused and now < paused[0]:
        return paused[0] - now, None
    new_states, wait, granted = {}, 0.0, True
    for name, limit in limits:
        verdict = decide(budget.get(name), limit, now, cost)
        if not verdict.granted:
            granted, wait = False, max(wait, verdict.wait)
        new_states[name] = verdict.state
    return (0.0, new_states) if granted else (wait, None)


def paused_budget(budget: Budget, until: float) -> Budget:
    """`budget` with its pause lengthened to `until` (never shortened)."""
    current = budget.get(PAUSE, [until])[0]
    return {**budget, PAUSE: [max(current, until)]}


def encode_budget(budget: Budget) -> str:
    """`name=1.5,1700000000.25|pause=...`: exact (repr round-trips floats), and
    several times cheaper than JSON, which matters on every request."""
    return "|".join(f"{name}={','.join(map(repr, state))}" for name, state in budget.items())


def decode_budget(text: str | None) -> Budget:
    budget: Budget = {}
    for part in text.split("|") if text else ():
        name, _, values = part.rpartition("=")
        budget[name] = [float(x) for x in values.split(",")] if values else []
    return budget


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
        f"state store URL {redact_url(url)!r}: unknown scheme {scheme!r} "
        "(use memory://, sqlite:///PATH or redis://HOST:PORT/DB)"
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))

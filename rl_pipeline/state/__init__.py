"""Where shared state lives: limiter budgets, page checkpoints, learned rates.

A store is named by a URL, as the `limits` library does:
`memory://`, `sqlite:///data/state.sqlite`, `redis://127.0.0.1:6379/0`.
"""

from urllib.parse import urlsplit

from rl_pipeline.state.base import StateStore, redact_url

__all__ = ["StateStore", "open_store", "redact_url"]


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

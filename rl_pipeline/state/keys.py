"""The names of what the product keeps in a state store, in one place.

`namespace` is one API + one credential (`api:fingerprint`); the braces keep
a namespace's keys in one Redis Cluster slot. Stores name their own limiter
state (`budget:…` in SQLite, `rl:{…}:limit:…` in Redis).
"""

from __future__ import annotations


def quota(namespace: str) -> str:
    """The daily and monthly request counts."""
    return f"quota:{namespace}"


def pace(namespace: str) -> str:
    """The learned pace: the rate the server takes, as learned from its 429s."""
    return f"rl:{{{namespace}}}:pace"


def answered(namespace: str) -> str:
    """Set once the API has answered anyone with this credential."""
    return f"rl:{{{namespace}}}:answered"


def breaker(endpoint: str) -> str:
    """The circuit breaker of one endpoint (`api.endpoint`)."""
    return f"breaker:{endpoint}"


def checkpoint(warehouse: str, endpoint: str, day: str) -> str:
    """Where a partition's pages stopped: per warehouse (a short hash of its path), endpoint and day."""
    return f"ckpt:{warehouse}:{endpoint}:{day}"

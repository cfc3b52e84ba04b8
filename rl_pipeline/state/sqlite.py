"""State shared by every process on one machine, in one SQLite file (WAL)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from rl_pipeline.limits.algorithms import Limit
from rl_pipeline.state.base import StateStore, decide_budget, decode_budget, encode_budget, paused_budget

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (namespace TEXT PRIMARY KEY, budget TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# One statement is one atomic write transaction: SQLite takes the write lock
# before it reads the row, and the Python function rl_update decides inside
# it. Twice as fast as BEGIN IMMEDIATE, SELECT, UPDATE, COMMIT.
_UPDATE = "UPDATE budgets SET budget = rl_update(budget) WHERE namespace = ?"
_CREATE = "INSERT OR IGNORE INTO budgets (namespace, budget) VALUES (?, '')"


def sqlite_path(url: str) -> Path:
    """`sqlite:///data/state.sqlite` is relative, `sqlite:////tmp/s.sqlite` absolute."""
    path = urlsplit(url).path
    if not path or path == "/":
        raise ValueError(f"state store URL {url!r}: no file path (use sqlite:///data/state.sqlite)")
    return Path(path[1:])


class _Update:
    """The decision rl_update applies to the stored budget, and what it found.
    One per connection (so per thread); it also remembers which namespaces'
    rows are known to exist."""

    def __init__(self) -> None:
        self.apply = lambda budget: budget
        self.wait = 0.0
        self.created: set[str] = set()

    def __call__(self, text: str | None) -> str:
        return encode_budget(self.apply(decode_budget(text)))


class SqliteStore(StateStore):
    """A namespace's limits and pause are one row, so a decision is one
    UPSERT statement: processes serialize on SQLite's write lock and never
    decide on stale state."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._connection()[0].executescript(_SCHEMA)

    def _connection(self) -> tuple[sqlite3.Connection, _Update]:
        found = getattr(self._local, "conn", None)
        if found is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            update = _Update()
            conn.create_function("rl_update", 1, update)
            found = self._local.conn = (conn, update)
            with self._all_lock:
                self._all.append(conn)
        return found

    def acquire(
        self, namespace: str, limits: Sequence[tuple[str, Limit]], cost: float, now: float, *, dry_run: bool = False
    ) -> float:
        conn, update = self._connection()

        def apply(budget: dict[str, list[float]]) -> dict[str, list[float]]:
            update.wait, new_states = decide_budget(budget, limits, now, cost)
            return budget if new_states is None or dry_run else budget | new_states

        update.apply = apply
        self._run(conn, update, namespace)
        return update.wait

    def pause(self, namespace: str, until: float) -> None:
        conn, update = self._connection()
        update.apply = lambda budget: paused_budget(budget, until)
        self._run(conn, update, namespace)

    @staticmethod
    def _run(conn: sqlite3.Connection, update: _Update, namespace: str) -> None:
        if namespace not in update.created:
            conn.execute(_CREATE, (namespace,))
            update.created.add(namespace)
        conn.execute(_UPDATE, (namespace,))

    def get(self, key: str) -> str | None:
        row = self._connection()[0].execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self._connection()[0].execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def delete(self, key: str) -> None:
        self._connection()[0].execute("DELETE FROM kv WHERE key = ?", (key,))

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

"""State shared by every process on one machine, in one SQLite file (WAL)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rl_pipeline.clock import Clock
from rl_pipeline.limits.algorithms import Limit
from rl_pipeline.limits.budget import decide_budget, decode_budget, encode_budget, paused_budget
from rl_pipeline.state.base import StateStore, T

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID"
# One statement is one atomic write transaction: SQLite takes the write lock
# before it reads the row, and the Python function rl_update computes the new
# value inside it. Twice as fast as BEGIN IMMEDIATE, SELECT, UPDATE, COMMIT.
_UPDATE = "UPDATE kv SET value = rl_update(value) WHERE key = ?"
_CREATE = "INSERT OR IGNORE INTO kv (key, value) VALUES (?, NULL)"


WAL_TRIES = 100  # ~5 s in all


def use_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (which the file keeps, so only its first opener changes it). Changing
    it needs a lock that SQLite does not wait for when another connection is opening the same new file
    (it answers "database is locked" at once rather than risk a deadlock), so that is tried again."""
    for attempt in range(WAL_TRIES):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_TRIES - 1:
                raise
            time.sleep(0.01 * (1 + attempt % 10))


def sqlite_path(url: str) -> Path:
    """`sqlite:///data/state.sqlite` is relative, `sqlite:////tmp/s.sqlite` absolute."""
    path = urlsplit(url).path
    if not path or path == "/":
        raise ValueError(f"state store URL {url!r}: no file path (use sqlite:///data/state.sqlite)")
    return Path(path[1:])


class _Updater:
    """rl_update's Python side, one per connection (so per thread): applies
    the function the store set for this statement and keeps its verdict."""

    def __init__(self) -> None:
        self.fn: Callable[[str | None], tuple[str | None, Any]] = lambda value: (value, None)
        self.verdict: Any = None
        self.error: Exception | None = None  # SQLite reports only "user-defined function raised exception"

    def __call__(self, value: str | None) -> str | None:
        try:
            new, self.verdict = self.fn(value)
        except Exception as exc:
            self.error = exc
            raise
        return new


class SqliteStore(StateStore):
    """Every decision and update is one UPDATE statement on one row (a
    namespace's limits and pause share a row), so processes serialize on
    SQLite's write lock and never decide on stale state."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._connection()[0].execute(_SCHEMA)

    def _connection(self) -> tuple[sqlite3.Connection, _Updater]:
        found = getattr(self._local, "conn", None)
        if found is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            updater = _Updater()
            conn.create_function("rl_update", 1, updater)
            found = self._local.conn = (conn, updater)
            with self._all_lock:
                self._all.append(conn)
        return found

    def update(self, key: str, fn: Callable[[str | None], tuple[str | None, T]]) -> T:
        conn, updater = self._connection()
        updater.fn, updater.error = fn, None
        try:
            if conn.execute(_UPDATE, (key,)).rowcount == 0:
                conn.execute(_CREATE, (key,))
                conn.execute(_UPDATE, (key,))
        except sqlite3.OperationalError:
            if updater.error is not None:
                raise updater.error from None
            raise
        return updater.verdict

    def acquire(
        self, namespace: str, limits: Sequence[tuple[str, Limit]], cost: float, clock: Clock, *, dry_run: bool = False
    ) -> float:

        def decide(value: str | None) -> tuple[str | None, float]:
            budget = decode_budget(value)
            # Inside the write lock: a caller that waited for it is stamped when decided, not when it came.
            wait, new_states = decide_budget(budget, limits, clock.now(), cost)
            return (value if new_states is None or dry_run else encode_budget(budget | new_states)), wait

        return self.update(f"budget:{namespace}", decide)

    def pause(self, namespace: str, until: float) -> None:
        self.update(
            f"budget:{namespace}", lambda value: (encode_budget(paused_budget(decode_budget(value), until)), None)
        )

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

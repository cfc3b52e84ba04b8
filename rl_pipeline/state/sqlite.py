"""State shared by every process on one machine, in one SQLite file (WAL)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from rl_pipeline.limits.algorithms import Limit
from rl_pipeline.state.base import StateStore, decide_all

_SCHEMA = """
CREATE TABLE IF NOT EXISTS limiter_state (key TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pauses (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


def sqlite_path(url: str) -> Path:
    """`sqlite:///data/state.sqlite` is relative, `sqlite:////tmp/s.sqlite` absolute."""
    path = urlsplit(url).path
    if not path or path == "/":
        raise ValueError(f"state store URL {url!r}: no file path (use sqlite:///data/state.sqlite)")
    return Path(path[1:])


class SqliteStore(StateStore):
    """Each decision is one `BEGIN IMMEDIATE` transaction, so processes
    serialize on SQLite's write lock and never decide on stale state."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def acquire(
        self,
        limits: Sequence[tuple[str, Limit]],
        cost: float,
        now: float,
        *,
        pause_key: str | None = None,
        dry_run: bool = False,
    ) -> float:
        conn = self._connection()
        keys = [key for key, _ in limits]
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = dict(
                conn.execute(
                    f"SELECT key, state FROM limiter_state WHERE key IN ({','.join('?' * len(keys))})", keys
                ).fetchall()
            )
            paused = conn.execute("SELECT until FROM pauses WHERE key = ?", (pause_key,)).fetchone()
            states = [json.loads(found[k]) if k in found else None for k in keys]
            wait, new_states = decide_all(states, [lim for _, lim in limits], now, cost, paused[0] if paused else None)
            if new_states is not None and not dry_run:
                conn.executemany(
                    "INSERT OR REPLACE INTO limiter_state (key, state) VALUES (?, ?)",
                    [(k, json.dumps(s)) for k, s in zip(keys, new_states, strict=True)],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return wait

    def pause(self, key: str, until: float) -> None:
        self._connection().execute(
            "INSERT INTO pauses (key, until) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET until = max(until, excluded.until)",
            (key, until),
        )

    def get(self, key: str) -> str | None:
        row = self._connection().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self._connection().execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def delete(self, key: str) -> None:
        self._connection().execute("DELETE FROM kv WHERE key = ?", (key,))

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

"""The moments just before and just after a request's bytes are written to its socket.

A server that allows no burst judges each request by when it arrives. Between
the client's decision to send and the bytes leaving, a busy machine can
deschedule the sending thread for several milliseconds, and a new connection
has to be opened; the request then arrives late and the next one, sent on
time, arrives too soon after it. So the sessions built here open the
connection first, then call a per-thread hook just before urllib3 writes a
request (where the rate's grant is taken) and another the moment it has
written it (where a write late all the same is seen).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_hook = threading.local()


def _call(name: str) -> bool:
    """Call this thread's hook `name`, once per request (whatever a redirect sends next); say if it ran."""
    callback: Callable[[], None] | None = getattr(_hook, name, None)
    if callback is None:
        return False
    setattr(_hook, name, None)
    callback()
    return True


class _Stamped:
    """urllib3's `request` writes the whole request (a GET has no body to stream) before it returns, its
    head (all of a GET) in one `send`, on a connection the pool has opened already."""

    def send(self, data: Any) -> None:
        # After the head was built (its first build in a process can take milliseconds).
        if _call("before") and not self.is_connected:  # type: ignore[attr-defined]
            # The hook may have waited long for a grant, and a server closes a connection idle for long.
            self.sock.close()  # type: ignore[has-type]
            self.sock = None
            self.connect()  # type: ignore[attr-defined]
        super().send(data)  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        _call("written")


class _StampedHTTPConnection(_Stamped, HTTPConnection):
    pass


class _StampedHTTPSConnection(_Stamped, HTTPSConnection):
    pass


class _StampedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _StampedHTTPConnection

    def _validate_conn(self, conn: Any) -> None:
        super()._validate_conn(conn)
        if conn.is_closed:  # as urllib3 does for HTTPS: connected here, not inside the write
            conn.connect()


class _StampedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _StampedHTTPSConnection


class _StampedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _StampedHTTPPool, "https": _StampedHTTPSPool}


def stamped_session() -> requests.Session:
    """A `requests.Session` whose direct (not proxied) requests call `on_written`'s hooks."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _StampedAdapter())
    return session


def calls_hooks(session: requests.Session, url: str, proxies: Mapping[str, str]) -> bool:
    """Whether `session` calls `on_written`'s hooks for a request to `url` sent with `proxies`: one built
    by `stamped_session`, and no proxy for that URL (a proxy's connections are urllib3's own)."""
    return isinstance(session.get_adapter(url), _StampedAdapter) and not select_proxy(url, dict(proxies))


@contextmanager
def on_written(callback: Callable[[], None], before: Callable[[], None] | None = None) -> Iterator[None]:
    """Call `callback` in this thread once the request sent within is written; if the session never
    reported the write (a proxy, a session not built here), call it when the request returns or fails.
    Call `before` just before the write, its connection open (and opened again if the server closed it
    while `before` ran); what it raises, the request raises."""
    _hook.written, _hook.before = callback, before
    try:
        yield
    finally:
        _hook.before = None
        _call("written")

"""The moment a request's bytes have been written to its socket.

A server that allows no burst judges each request by when it arrives. Between
the client's decision to send and the bytes leaving, a busy machine can
deschedule the sending thread for several milliseconds; the request then
arrives late and the next one, sent on time, arrives too soon after it. Only
a stamp taken after the write sees that delay, so the sessions built here
call a per-thread hook the moment urllib3 has written a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_hook = threading.local()


def _written() -> None:
    callback: Callable[[], None] | None = getattr(_hook, "callback", None)
    if callback is not None:
        _hook.callback = None  # once per request, whatever a redirect sends next
        callback()


class _Stamped:
    """urllib3's `request` writes the whole request (a GET has no body to stream) before it returns."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        _written()


class _StampedHTTPConnection(_Stamped, HTTPConnection):
    pass


class _StampedHTTPSConnection(_Stamped, HTTPSConnection):
    pass


class _StampedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _StampedHTTPConnection


class _StampedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _StampedHTTPSConnection


class _StampedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _StampedHTTPPool, "https": _StampedHTTPSPool}


def stamped_session() -> requests.Session:
    """A `requests.Session` whose direct (not proxied) requests call `on_written`'s callback once written."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _StampedAdapter())
    return session


@contextmanager
def on_written(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` in this thread once the request sent within is written; if the session never
    reported the write (a proxy, a session not built here), call it when the request returns or fails."""
    _hook.callback = callback
    try:
        yield
    finally:
        _written()

"""Which hosts this process has heard from: a host that never answered is down, not busy.

An outage in the middle of a backfill is waited out (the circuit breaker
holds everyone back, then probes); a host that has not answered once since
the process started — a wrong `base_url`, a server not running, a name that
does not resolve, a certificate not trusted — fails the run within seconds,
naming the host and the cause, instead of waiting out the breaker in silence.
"""

from __future__ import annotations

import threading

import requests

_answered: set[str] = set()  # base URLs that gave an HTTP answer in this process
_refused: set[str] = set()  # base URLs this process failed to connect to
_lock = threading.Lock()

_CAUSES = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "the name does not resolve"),
    ("Temporary failure in name resolution", "the name does not resolve"),
    ("nodename nor servname", "the name does not resolve"),
    ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
    ("SSL", "the TLS handshake failed"),
    ("timed out", "connecting timed out"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "the network is unreachable"),
)


def answered(base_url: str) -> None:
    """`base_url` gave an HTTP answer (any status)."""
    if base_url not in _answered:
        with _lock:
            _answered.add(base_url)


def not_connected(base_url: str) -> None:
    """Connecting to `base_url` failed (refused, DNS, TLS, connect timeout)."""
    if base_url not in _refused:
        with _lock:
            _refused.add(base_url)


def never_reached(base_url: str) -> bool:
    """This process failed to connect to `base_url` and has never had an answer from it."""
    return base_url in _refused and base_url not in _answered


def connection_cause(exc: requests.RequestException) -> str:
    """Why a connection failed, in a few words (the exception's text is a paragraph of urllib3)."""
    text = str(exc)
    return next((cause for needle, cause in _CAUSES if needle in text), type(exc).__name__)

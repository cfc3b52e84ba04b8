"""A misbehaving HTTP server on loopback: each path answers what the test scripted, and every request is kept.

For the answers the demo API never gives (a `Link` to another host, a proxy's
HTML page, a `Retry-After: inf`): the client meets them over a real socket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from rl_pipeline.sources import ApiSpec, load_sources

SECRET = "s3cret-token-value"  # the token clients of a scripted server send: it must never show anywhere


def spec_for(url: str) -> ApiSpec:
    """The shipped demo API's description, pointed at `url`, with no base-URL variable to override it."""
    return load_sources().apis["demo"].model_copy(update={"base_url": url, "base_url_env": None})


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless it is bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]


class ScriptedServer:
    """Answers GET `path` with the replies scripted for it, in turn (the last one repeats); 404 otherwise."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                server.seen.append(Seen(url.path, url.query, dict(self.headers)))
                queue = server.replies.get(url.path) or [Reply(404, {"error": "no such path"})]
                reply = queue.pop(0) if len(queue) > 1 else queue[0]
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._http.server_address[1]}"

    def script(self, path: str, *replies: Reply) -> None:
        self.replies[path] = list(replies)


@contextmanager
def scripted_server(host: str = "127.0.0.1") -> Iterator[ScriptedServer]:
    server = ScriptedServer(host)
    thread = threading.Thread(target=server._http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._http.shutdown()
        server._http.server_close()

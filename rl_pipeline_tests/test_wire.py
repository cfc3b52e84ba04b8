"""The write stamps: called once per request, just before its bytes are written (the connection open) and
just after, before its answer is read."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from rl_pipeline import wire
from rl_pipeline_tests.support import ADMIN, answer_once


def test_the_hooks_run_once_around_the_write_and_before_the_answer_returns(demo_api) -> None:
    events: list[str] = []
    with wire.stamped_session() as session:
        request = session.prepare_request(requests.Request("GET", f"{demo_api.url}/_admin/stats", headers=ADMIN))
        with wire.on_written(lambda: events.append("written"), before=lambda: events.append("before")):
            assert session.send(request, timeout=5).status_code == 200
            events.append("returned")
    assert events == ["before", "written", "returned"]


def test_the_hook_before_runs_with_the_connection_open_and_what_it_raises_stops_the_write() -> None:
    """A plain-HTTP connection is opened before the hook, so that a handshake is not inside the write;
    the hook may still refuse to send."""
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def before() -> None:
            connection, _ = listener.accept()  # the client has connected already
            accepted.append(connection)
            connection.setblocking(False)
            with pytest.raises(BlockingIOError):
                connection.recv(1)  # and written nothing yet
            raise RuntimeError("no grant")

        port = listener.getsockname()[1]
        with (
            wire.stamped_session() as session,
            wire.on_written(lambda: None, before=before),
            pytest.raises(RuntimeError, match="no grant"),
        ):
            session.get(f"http://127.0.0.1:{port}/", timeout=5)
    with accepted[0] as connection:
        connection.settimeout(5)
        assert connection.recv(1) == b""  # closed with nothing sent


def test_a_session_that_reports_no_write_gets_the_hook_when_the_request_returns(demo_api) -> None:
    events: list[str] = []
    with requests.Session() as session, wire.on_written(lambda: events.append("written")):
        session.get(f"{demo_api.url}/_admin/stats", headers=ADMIN, timeout=5)
        events.append("returned")
    assert events == ["returned", "written"]


def test_a_connection_the_server_closed_while_the_hook_waited_is_opened_again() -> None:
    """The hook waits for the rate's grant with the connection open; a server that closes idle connections
    may close it meanwhile. The request goes on a new one instead of failing on the closed one."""
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def before() -> None:  # the server closes the connection while the hook waits
            connection, _ = listener.accept()
            connection.close()
            time.sleep(0.1)
            threading.Thread(target=answer_next, daemon=True).start()

        def answer_next() -> None:
            connection, _ = listener.accept()
            accepted.append(connection)
            answer_once(connection, b"ok")

        port = listener.getsockname()[1]
        with wire.stamped_session() as session, wire.on_written(lambda: None, before=before):
            response = session.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.text == "ok" and len(accepted) == 1

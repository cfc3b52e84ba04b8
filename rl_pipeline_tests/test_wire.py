"""The write stamp: called once per request, after its bytes are written and before its answer is read."""

from __future__ import annotations

import requests

from rl_pipeline import wire
from rl_pipeline_tests.support import ADMIN


def test_the_hook_runs_once_after_the_write_and_before_the_answer_returns(demo_api) -> None:
    events: list[str] = []
    with wire.stamped_session() as session:
        request = session.prepare_request(requests.Request("GET", f"{demo_api.url}/_admin/stats", headers=ADMIN))
        with wire.on_written(lambda: events.append("written")):
            assert session.send(request, timeout=5).status_code == 200
            events.append("returned")
    assert events == ["written", "returned"]


def test_a_session_that_reports_no_write_gets_the_hook_when_the_request_returns(demo_api) -> None:
    events: list[str] = []
    with requests.Session() as session, wire.on_written(lambda: events.append("written")):
        session.get(f"{demo_api.url}/_admin/stats", headers=ADMIN, timeout=5)
        events.append("returned")
    assert events == ["returned", "written"]

"""The HTTP client against the demo API over a real socket."""

from __future__ import annotations

import itertools
import socket
import threading
from datetime import date

import pytest

from rl_pipeline.client import ApiClient
from rl_pipeline.demo_api import day_records
from rl_pipeline.errors import ApiError, MissingTokenError
from rl_pipeline.pace import PacePolicy
from rl_pipeline.pagination import PageRequest
from rl_pipeline.retry import RetryPolicy
from rl_pipeline.sources import RateLimitSpec, load_sources
from rl_pipeline.state import open_store
from rl_pipeline.state.memory import MemoryStore
from rl_pipeline_tests.scripted_server import spec_for
from rl_pipeline_tests.support import TOKEN, answer_once


def demo_client(rate: float, burst: float, store_url: str = "memory://", **kwargs) -> ApiClient:
    spec = load_sources().apis["demo"]
    spec = spec.model_copy(update={"rate_limits": [RateLimitSpec(rate=rate, burst=burst)]})
    return ApiClient("demo", spec, token=kwargs.pop("token", TOKEN), store=open_store(store_url), **kwargs)


def test_the_client_stays_under_the_published_limit_measured_by_the_server(make_demo_api) -> None:
    server = make_demo_api(rate=10, burst=5)
    client = demo_client(rate=10, burst=5)
    days = [date(2024, 1, 4), date(2024, 1, 5)]  # 1,344 + 227 records: 16 + 3 pages of 100
    got = [r for day in days for page in client.fetch_day("events_offset", day) for r in page.records]
    assert got == [r for day in days for r in day_records(42, day)]
    stats = server.api.stats()
    assert stats["by_status"] == {"200": client.stats.requests}
    times = [t for t, _, _ in stats["requests"]]
    assert stats["most_in_any_second"] <= 10 + 5
    # Paced, not burst: 19 requests spaced evenly a margin under the published 10/s (the burst is only a ceiling).
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.09
    assert times[-1] - times[0] == pytest.approx((len(times) - 1) / (10 * (1 - PacePolicy.margin)), abs=0.3)


def test_the_client_recovers_from_429s_and_honours_retry_after(make_demo_api) -> None:
    server = make_demo_api(rate=4, burst=2, limit_headers=False)
    client = demo_client(rate=100, burst=100, retry=RetryPolicy(base_delay=0.05))  # believes in a 25x higher limit
    day = date(2024, 1, 5)
    got = [r for page in client.fetch_day("events_cursor", day) for r in page.records]
    assert got == day_records(42, day)
    assert client.stats.rate_limited > 0
    assert client.stats.statuses["429"] == client.stats.rate_limited == client.stats.retries
    log = server.api.stats()["requests"]
    for (t, status, _), (t_next, _, _) in itertools.pairwise(log):
        if status == 429:
            assert t_next - t >= 1.0 - 0.05  # the demo API says Retry-After: 1


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "remaining-0"])
def test_a_403_that_says_it_is_the_rate_limit_is_a_wait_as_github_answers(make_demo_api, retry_after: bool) -> None:
    """GitHub refuses over its limits with 403 and `X-RateLimit-Remaining: 0` (secondary limits: `Retry-After`)."""
    server = make_demo_api(rate=4, burst=2, limit_status=403, retry_after=retry_after, limit_headers=False)
    client = demo_client(rate=100, burst=100, retry=RetryPolicy(max_attempts=1))  # every refusal a wait, no attempt
    day = date(2024, 1, 5)
    got = [r for page in client.fetch_day("events_cursor", day) for r in page.records]
    assert got == day_records(42, day)
    assert client.stats.statuses["403"] == client.stats.rate_limited == server.api.stats()["by_status"]["403"] > 0
    assert client.pace.rate() < 100 * (1 - PacePolicy.margin)  # it learned from them as from 429s


def test_a_4xx_fails_at_once_naming_the_page_and_the_server_message(demo_api) -> None:
    client = demo_client(rate=100, burst=10)
    endpoint = client.spec.endpoints["events_offset"]
    too_big = endpoint.pagination.model_copy(update={"page_size": 5000})
    bad = endpoint.model_copy(update={"pagination": too_big})
    client.spec = client.spec.model_copy(update={"endpoints": {"events_offset": bad}})
    with pytest.raises(ApiError) as caught:
        list(client.fetch_day("events_offset", date(2024, 1, 4)))
    message = str(caught.value)
    assert "source demo.events_offset, partition 2024-01-04, page 1: HTTP 400" in message
    assert "limit must be between 1 and 100" in message
    assert demo_api.api.stats()["by_status"] == {"400": 1}


def test_a_token_is_required_when_the_source_names_one() -> None:
    with pytest.raises(MissingTokenError, match="set the environment variable RL_DEMO_API_TOKEN"):
        demo_client(rate=1, burst=1, token=None)


def test_the_token_stays_out_of_reprs_and_errors(make_demo_api) -> None:
    make_demo_api(token="the-real-one")
    client = demo_client(rate=100, burst=10, token="wrong-token-for-this-test")
    with pytest.raises(ApiError) as caught:
        list(client.fetch_day("events_link", date(2024, 1, 4)))
    assert "HTTP 401" in str(caught.value)
    for text in (str(caught.value), repr(client), repr(client.stats)):
        assert "wrong-token-for-this-test" not in text


def test_the_client_learns_the_limit_from_rate_limit_headers(make_demo_api) -> None:
    server = make_demo_api(rate=8, burst=2)
    client = demo_client(rate=100, burst=100)  # believes in a 12x higher limit
    day = date(2024, 1, 4)  # 14 pages
    got = [r for page in client.fetch_day("events_link", day) for r in page.records]
    assert got == day_records(42, day)
    # X-RateLimit-Remaining: 0 with its Reset pauses the client before the server has to say 429.
    assert server.api.stats()["by_status"] == {"200": client.stats.requests}
    assert client.stats.limiter_wait_s > 0.5


class CheckedAtGrant(MemoryStore):
    """A store that, when the rate decides, checks that the client's connection to `listener` is open with
    nothing written on it yet, then answers the request that follows from a thread of its own."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__("memory://")
        self.listener, self.checked = listener, 0

    def acquire(self, namespace, limits, cost, clock, *, dry_run=False):
        connection, _ = self.listener.accept()  # connected already (the listener never waits: timeout 0)
        connection.setblocking(False)
        with pytest.raises(BlockingIOError):
            connection.recv(1)  # and nothing written yet
        self.checked += 1
        threading.Thread(target=answer_once, args=(connection, b"{}"), daemon=True).start()
        return super().acquire(namespace, limits, cost, clock, dry_run=dry_run)


def test_the_rate_is_granted_at_the_write_with_the_connection_open() -> None:
    """Nothing stands between a grant and the write (a connection's handshake, a thread descheduled
    between admission and send): the request reaches the server as late after its grant as the write's
    own syscall, so the next grant, spaced from this one, does not reach it too soon after."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0)
        store = CheckedAtGrant(listener)
        spec = spec_for(f"http://127.0.0.1:{listener.getsockname()[1]}")
        client = ApiClient("demo", spec, token=TOKEN, store=store)
        answer = client.get_json("events_offset", PageRequest(f"{client.base_url}/events"), "page 1")
    assert answer.body == {} and store.checked == 1

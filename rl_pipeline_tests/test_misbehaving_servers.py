"""Regression tests for defects an adversarial review proved (numbered D1..D24): the client against a
server that misbehaves on purpose, over a real socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import dagster as dg
import pytest

from rl_pipeline.client import ApiClient
from rl_pipeline.errors import ApiError, MissingTokenError, PaginationError
from rl_pipeline.retry import RetryPolicy
from rl_pipeline.state import open_store
from rl_pipeline_tests.scripted_server import SECRET as TOKEN
from rl_pipeline_tests.scripted_server import Reply, ScriptedServer, scripted_server, spec_for

DAY = date(2024, 1, 4)


def client_for(server: ScriptedServer, store_url: str = "memory://", **kwargs) -> ApiClient:
    return ApiClient("demo", spec_for(server.url), token=TOKEN, store=open_store(store_url), **kwargs)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def test_d4_a_token_with_a_line_end_is_refused_naming_the_variable_not_the_value(server: ScriptedServer) -> None:
    for bad in (TOKEN + "\n", " " + TOKEN, TOKEN[:4] + "\x00" + TOKEN[4:]):
        with pytest.raises(MissingTokenError) as caught:
            ApiClient("demo", spec_for(server.url), token=bad, store=open_store("memory://"))
        assert "RL_DEMO_API_TOKEN" in str(caught.value) and TOKEN not in str(caught.value)
    assert not server.seen


@pytest.mark.parametrize("elsewhere", ["http://127.0.0.2:{port}", "https://127.0.0.1:{port}"])
def test_d5_a_next_link_to_another_origin_is_not_followed_with_the_token(server: ScriptedServer, elsewhere) -> None:
    port = server.url.rsplit(":", 1)[1]
    with scripted_server("127.0.0.2") as other:
        target = elsewhere.format(port=other.url.rsplit(":", 1)[1] if "127.0.0.2" in elsewhere else port)
        link = f'<{target}/v1/link/events?day=2024-01-04&page=2>; rel="next"'
        server.script("/v1/link/events", Reply(200, [{"id": 1}], {"Link": link}))
        client = client_for(server)
        with pytest.raises(PaginationError) as caught:
            list(client.fetch_day("events_link", DAY))
        message = str(caught.value)
        assert "source demo.events_link, partition 2024-01-04, page 1" in message
        assert "not followed" in message and TOKEN not in message
        assert not other.seen  # the token never went there
    assert len(server.seen) == 1


def test_d6_a_200_that_is_not_json_is_quoted_with_the_token_masked(server: ScriptedServer) -> None:
    echo = f"<html>proxy error; your request had Authorization: Bearer {TOKEN}</html>".encode()
    server.script("/v1/link/events", Reply(200, echo, {"Content-Type": "text/html"}))
    client = client_for(server, retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    with pytest.raises(ApiError) as caught:
        list(client.fetch_day("events_link", DAY))
    assert "not JSON" in str(caught.value) and TOKEN not in str(caught.value)


def test_d20_a_latin1_body_without_a_charset_keeps_its_letters(server: ScriptedServer) -> None:
    body = '[{"id": 1, "name": "Caf\u00e9 M\u00fcller, S\u00e3o Paulo, na\u00efve r\u00e9sum\u00e9s"}]'
    server.script("/v1/link/events", Reply(200, body.encode("latin-1"), {"Content-Type": "application/json"}))
    [page] = client_for(server).fetch_day("events_link", DAY)
    assert page.records == [{"id": 1, "name": "Café Müller, São Paulo, naïve résumés"}]


@pytest.mark.parametrize("retry_after", ["99999999", "inf", "nan"])
def test_d7_an_absurd_retry_after_never_sticks_past_the_request_deadline(
    server: ScriptedServer, tmp_path, retry_after: str
) -> None:
    """A 429 saying `Retry-After: 99999999` (or inf) must not pause every later run on this API for years."""
    store = f"sqlite:///{tmp_path}/state.sqlite"
    server.script("/v1/link/events", Reply(429, {"error": "slow down"}, {"Retry-After": retry_after}), Reply(200, []))
    started = time.monotonic()
    first = client_for(server, store, retry=RetryPolicy(deadline=2.0))
    try:
        assert [p.records for p in first.fetch_day("events_link", DAY)] == [[]]  # a finite pause was waited out
    except ApiError as exc:  # or the request gave up at its deadline, naming where
        assert "source demo.events_link, partition 2024-01-04" in str(exc)
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))
    later = client_for(server, store, retry=RetryPolicy(deadline=2.0))  # the next run, on the same store
    assert [p.records for p in later.fetch_day("events_link", DAY)] == [[]]


def test_d24_the_backoff_of_a_late_attempt_does_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=5000, base_delay=0.5, max_delay=60.0)
    assert policy.delay(1023) <= 60.0 and policy.delay(4999) <= 60.0


def test_d22_a_redis_password_stays_out_of_reprs_config_and_errors(monkeypatch, redis_url: str) -> None:
    from rl_pipeline.definitions import build_definitions
    from rl_pipeline.defs.resources import RateLimitedApi

    with_password = "redis://:hunter2-pw@127.0.0.1:6379/0"
    assert "hunter2-pw" not in repr(RateLimitedApi(api="demo", state_store=with_password))
    with pytest.raises(ValueError) as caught:
        open_store("rediss+bogus://:hunter2-pw@127.0.0.1:6379/0")
    assert "hunter2-pw" not in str(caught.value) and "unknown scheme" in str(caught.value)
    monkeypatch.setenv("RL_STATE_STORE", with_password)
    resource = build_definitions().resources["demo_api"]
    assert "hunter2-pw" not in repr(resource)  # Dagster's config holds the variable's name, not its value
    assert isinstance(resource.state_store, dg.EnvVar) and resource.state_store == "RL_STATE_STORE"


def test_d7_a_pause_in_redis_expires_with_the_pause(redis_url: str) -> None:
    import redis

    store = open_store(redis_url)
    namespace = f"d7-{time.time_ns()}"
    store.pause(namespace, time.time() + 5)
    ttl = redis.Redis.from_url(redis_url).ttl(f"rl:{{{namespace}}}:pause")
    assert 0 < ttl <= 86_400


def test_a_403_that_says_nothing_of_the_limit_fails_at_once_and_one_that_does_is_waited_out(
    server: ScriptedServer,
) -> None:
    """A bare 403 is a permission the token lacks: no wait helps. GitHub's limits answer 403 too, saying so with
    `X-RateLimit-Remaining: 0` and when it resets: that one is a wait, not a failed attempt."""
    forbidden = Reply(403, {"message": "Resource not accessible by integration"})
    server.script("/v1/link/events", forbidden)
    with pytest.raises(ApiError, match="page 1: HTTP 403 from /v1/link/events: Resource not accessible"):
        list(client_for(server).fetch_day("events_link", DAY))
    assert len(server.seen) == 1
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}  # seconds until it grows
    limited = Reply(403, {"message": "API rate limit exceeded"}, spent)
    server.script("/v1/link/events", limited, limited, Reply(200, [{"id": 1}]))
    client = client_for(server, retry=RetryPolicy(max_attempts=1))
    [page] = client.fetch_day("events_link", DAY)
    assert page.records == [{"id": 1}] and client.stats.rate_limited == 2


def test_a_429_that_names_its_wait_as_a_duration_is_waited_that_long(server: ScriptedServer) -> None:
    """OpenAI's way: no Retry-After, the budget spent and its reset as a duration (`2.5s`). The client waits for
    it, not for its own shorter pause, and a second 429 never comes."""
    spent = {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "2.5s"}
    server.script("/v1/link/events", Reply(429, {"error": "rate limited"}, spent), Reply(200, [{"id": 1}]))
    client = client_for(server)
    started = time.monotonic()
    [page] = client.fetch_day("events_link", DAY)
    assert page.records == [{"id": 1}] and client.stats.rate_limited == 1
    assert 2.4 <= time.monotonic() - started < 15

"""Reading the server's limit from its headers, in every common dialect."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from rl_pipeline.headers import parse_retry_after, read_server_limit

NOW = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT


def read(**headers: str):
    return read_server_limit(CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()}), NOW)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: go now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header, expected) -> None:
    assert parse_retry_after(header, NOW) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("reset", "seconds"),
    [
        (str(int(NOW) + 30), 30.0),  # epoch seconds
        (str(int(NOW * 1000) + 30_000), 30.0),  # epoch milliseconds
        ("30", 30.0),  # seconds from now
        ("0.25", 0.25),
        (str(int(NOW) - 5), 0.0),  # already passed
    ],
)
def test_x_ratelimit_reset_is_detected_not_assumed(reset: str, seconds: float) -> None:
    limit = read(X_RateLimit_Limit="60", X_RateLimit_Remaining="0", X_RateLimit_Reset=reset)
    assert limit.limit == 60 and limit.remaining == 0
    assert limit.reset_in == pytest.approx(seconds)
    assert limit.exhausted == (seconds > 0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Twitter/X: `Rate-Limit`, the reset in epoch seconds.
        ({"X-Rate-Limit-Limit": "900", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(NOW) + 60)},
         (900, 0, 60.0)),
        # OpenAI: a `-Requests` suffix, the reset a duration.
        ({"X-RateLimit-Limit-Requests": "500", "X-RateLimit-Remaining-Requests": "0",
          "X-RateLimit-Reset-Requests": "1m30.5s"}, (500, 0, 90.5)),
        ({"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "250ms"}, (None, 0, 0.25)),
        # Discord: the reset both as an epoch with milliseconds and as seconds after; the latter needs no clock.
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{NOW + 500:.3f}", "X-RateLimit-Reset-After": "1.25"},
         (None, 0, 1.25)),
        # Atlassian: an ISO 8601 date, with or without its zone (UTC).
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2015-10-21T07:29Z"}, (None, 0, 60.0)),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2015-10-21T07:28:30"}, (None, 0, 30.0)),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "Wed, 21 Oct 2015 07:28:05 GMT"}, (None, 0, 5.0)),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "whenever"}, (None, 0, None)),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5 minutes"}, (None, 0, None)),
    ],
)  # fmt: skip
def test_the_common_spellings_of_the_limit_headers(headers: dict[str, str], expected) -> None:
    limit = read_server_limit(CaseInsensitiveDict(headers), NOW)
    assert (limit.limit, limit.remaining, limit.reset_in) == pytest.approx(expected)
    assert limit.exhausted == bool(expected[2])


def test_retry_after_ms_is_the_same_wait_to_the_millisecond() -> None:
    """Azure and OpenAI send both; `Retry-After` rounds to whole seconds, 10% of a 10 s window."""
    assert read(Retry_After="2", Retry_After_Ms="1450").retry_after == pytest.approx(1.45)
    assert read(x_ms_retry_after_ms="800").pause_for == pytest.approx(0.8)
    assert read(Retry_After="3", Retry_After_Ms="soon").retry_after == 3.0


def test_a_skewed_server_clock_is_corrected_with_date() -> None:
    # The server's clock runs 100 s behind ours; its reset is 30 s ahead of *its* now.
    server_now = "Wed, 21 Oct 2015 07:26:20 GMT"
    limit = read(Date=server_now, X_RateLimit_Remaining="0", X_RateLimit_Reset=str(int(NOW) - 100 + 30))
    assert limit.reset_in == pytest.approx(30.0)
    retry = read(Date=server_now, Retry_After="Wed, 21 Oct 2015 07:26:50 GMT")
    assert retry.retry_after == pytest.approx(30.0)


def test_ietf_combined_and_policy_headers() -> None:
    draft7 = read(RateLimit="limit=100, remaining=0, reset=7", RateLimit_Policy="100;w=60")
    assert (draft7.limit, draft7.remaining, draft7.reset_in, draft7.window) == (100, 0, 7, 60)
    assert draft7.pause_for == 7
    draft9 = read(RateLimit='"default";r=12;t=3', RateLimit_Policy='"default";q=50;w=10')
    assert (draft9.limit, draft9.remaining, draft9.reset_in, draft9.window) == (50, 12, 3, 10)
    assert not draft9.exhausted and draft9.pause_for is None
    older = read(RateLimit_Limit="10", RateLimit_Remaining="4", RateLimit_Reset="2")
    assert (older.limit, older.remaining, older.reset_in) == (10, 4, 2)


def test_retry_after_wins_over_the_reset() -> None:
    limit = read(Retry_After="5", X_RateLimit_Remaining="0", X_RateLimit_Reset="60")
    assert limit.pause_for == 5


def test_no_headers_say_nothing() -> None:
    limit = read()
    assert limit.pause_for is None and not limit.exhausted and limit.limit is None


def test_d18_of_several_ietf_limits_the_tightest_decides_and_odd_parameters_are_ignored() -> None:
    both = read(
        RateLimit='"burst";r=50;t=1, "daily";r=0;t=3600', RateLimit_Policy='"burst";q=100;w=1, "daily";q=1000;w=86400'
    )
    assert both.exhausted and both.pause_for == 3600  # the spent daily limit, not the burst with 50 left
    assert (both.limit, both.window) == (1000, 86400)  # 1000 a day is the lower rate
    odd = read(RateLimit='"default";r=3;t=2', RateLimit_Policy='"default";q=10;w=1;v=1.2.3')
    assert (odd.remaining, odd.limit, odd.window) == (3, 10, 1)


HEADER_NAMES = (
    "Retry-After", "Retry-After-Ms", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
    "X-RateLimit-Reset-After", "X-Rate-Limit-Reset", "X-RateLimit-Reset-Requests", "RateLimit", "RateLimit-Policy",
    "Date",
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.builds("{}{}".format, st.integers(0, 10**450), st.sampled_from(["", "ms", "h", "m", "s", "m0s"])),
    st.integers(0, 10**450).map(lambda n: f"limit=5, remaining=0, reset={n}"),
    st.integers(0, 10**450).map(lambda n: f'"burst";r=0;t={n}, "daily";q=5;w={n}'),
    st.datetimes().map(lambda moment: moment.isoformat()),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_VALUES, max_size=6))
def test_whatever_a_server_sends_the_headers_read_as_nothing_or_a_finite_wait(headers: dict[str, str]) -> None:
    """A header no dialect knows, a number of 400 digits, a date in the year 1: never an exception, never an
    endless or negative wait."""
    limit = read_server_limit(CaseInsensitiveDict(headers), NOW)
    for seconds in (limit.retry_after, limit.reset_in, limit.pause_for, limit.window):
        assert seconds is None or 0 <= seconds < math.inf

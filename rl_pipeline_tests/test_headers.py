"""Reading the server's limit from its headers, in every common dialect."""

from __future__ import annotations

import pytest
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

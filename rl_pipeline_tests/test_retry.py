"""Retry timing: every jitter stays in its band, and Retry-After is a floor."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rl_pipeline.retry import Jitter, RetryPolicy

ATTEMPTS = st.integers(min_value=0, max_value=12)


@given(attempt=ATTEMPTS, seed=st.integers(0, 2**32))
def test_full_jitter_is_uniform_below_the_capped_backoff(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20, jitter=Jitter.FULL)
    assert 0 <= policy.delay(attempt, rng=random.Random(seed)) <= min(20, 0.5 * 2**attempt)


@given(attempt=ATTEMPTS, seed=st.integers(0, 2**32))
def test_equal_jitter_keeps_at_least_half_the_backoff(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20, jitter=Jitter.EQUAL)
    backoff = min(20, 0.5 * 2**attempt)
    assert backoff / 2 <= policy.delay(attempt, rng=random.Random(seed)) <= backoff


@given(previous=st.floats(0, 100), seed=st.integers(0, 2**32))
def test_decorrelated_jitter_grows_from_the_previous_delay(previous: float, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20, jitter=Jitter.DECORRELATED)
    delay = policy.delay(3, previous=previous, rng=random.Random(seed))
    assert 0.5 <= delay <= min(20, max(0.5, previous * 3))


def test_the_classic_formula() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=10, jitter=Jitter.NONE, classic_jitter=0.25)
    delays = [policy.delay(a, rng=random.Random(a)) for a in range(6)]
    for attempt, delay in enumerate(delays):
        assert min(10, 2**attempt) <= delay <= min(10, 2**attempt) + 0.25


@pytest.mark.parametrize("jitter", list(Jitter))
@given(retry_after=st.floats(0, 3600), attempt=ATTEMPTS, seed=st.integers(0, 2**32))
def test_retry_after_is_a_floor_jitter_never_shortens(jitter, retry_after, attempt, seed) -> None:
    policy = RetryPolicy(base_delay=0.5, jitter=jitter)
    delay = policy.delay(attempt, retry_after=retry_after, rng=random.Random(seed))
    assert retry_after <= delay <= retry_after + 0.5

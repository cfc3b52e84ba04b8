"""The circuit breaker on an injected clock, on every store."""

from __future__ import annotations

import pytest

from rl_pipeline.breaker import BreakerPolicy, CircuitBreaker, CircuitOpen, Status
from rl_pipeline.clock import FakeClock

POLICY = BreakerPolicy(consecutive_failures=3, failure_rate=0.5, min_requests=6, window=60, cooldown=10)


def breaker(store, namespace, clock) -> CircuitBreaker:
    return CircuitBreaker(store, f"{namespace}:breaker", "demo.events", POLICY, clock)


def test_opens_after_consecutive_failures_and_refuses_every_worker(store, namespace) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    a, b = breaker(store, namespace, clock), breaker(store, namespace, clock)
    for _ in range(2):
        a.before_request()
        a.after_request(success=False)
    assert a.state().status is Status.CLOSED
    a.after_request(success=False)
    assert a.state().status is Status.OPEN
    with pytest.raises(CircuitOpen, match=r"circuit open for demo\.events until 2023-11-14T22:13:30Z"):
        b.before_request()


def test_a_success_resets_the_consecutive_count(store, namespace) -> None:
    a = breaker(store, namespace, FakeClock())
    for outcome in [False, False, True, False, False]:
        a.after_request(success=outcome)
    assert a.state().status is Status.CLOSED


def test_opens_on_the_failure_rate_of_a_window(store, namespace) -> None:
    a = breaker(store, namespace, FakeClock())
    for outcome in [False, True, False, True, False, True]:  # 50% of 6, never 3 in a row
        assert a.state().status is Status.CLOSED
        a.after_request(success=outcome)
    assert a.state().status is Status.OPEN


def test_after_the_cooldown_exactly_one_probe_goes(store, namespace) -> None:
    clock = FakeClock()
    workers = [breaker(store, namespace, clock) for _ in range(3)]
    for _ in range(3):
        workers[0].after_request(success=False)
    clock.advance(10)
    admitted = []
    for worker in workers:
        try:
            worker.before_request()
            admitted.append(worker)
        except CircuitOpen:
            pass
    assert len(admitted) == 1
    admitted[0].after_request(success=False)  # the probe fails: open again for a full cooldown
    assert workers[1].state().status is Status.OPEN
    with pytest.raises(CircuitOpen):
        workers[2].before_request()
    clock.advance(10)
    workers[2].before_request()
    workers[2].after_request(success=True)  # the probe succeeds: closed for everyone
    assert workers[0].state().status is Status.CLOSED
    workers[0].before_request()
    workers[1].before_request()


def test_a_lost_probe_frees_its_lease_after_the_probe_timeout(store, namespace) -> None:
    clock = FakeClock()
    a, b = breaker(store, namespace, clock), breaker(store, namespace, clock)
    for _ in range(3):
        a.after_request(success=False)
    clock.advance(10)
    a.before_request()  # a's probe never reports (its process died)
    with pytest.raises(CircuitOpen):
        b.before_request()
    clock.advance(POLICY.probe_timeout)
    b.before_request()

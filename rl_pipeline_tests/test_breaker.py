"""The circuit breaker on an injected clock, on every store."""

from __future__ import annotations

import contextlib

import pytest

from rl_pipeline.breaker import BreakerPolicy, CircuitBreaker, Status
from rl_pipeline.clock import FakeClock
from rl_pipeline.errors import CircuitOpen

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
        with contextlib.suppress(CircuitOpen):
            admitted.append((worker, worker.before_request()))
    assert len(admitted) == 1
    prober, lease = admitted[0]
    prober.after_request(success=False, probe=lease)  # the probe fails: open again for a full cooldown
    assert workers[1].state().status is Status.OPEN
    with pytest.raises(CircuitOpen):
        workers[2].before_request()
    clock.advance(10)
    lease = workers[2].before_request()
    workers[2].after_request(success=True, probe=lease)  # the probe succeeds: closed for everyone
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


def test_d17_only_the_probe_decides_half_open_not_a_straggler(store, namespace) -> None:
    """A request sent while closed answers while half-open: its failure must not reopen the circuit,
    its success must not close it, and no second probe may go while the first is in flight."""
    clock = FakeClock()
    a, b = breaker(store, namespace, clock), breaker(store, namespace, clock)
    for _ in range(3):
        a.after_request(success=False)
    clock.advance(10)
    lease = a.before_request()
    assert lease and a.state().status is Status.HALF_OPEN
    b.after_request(success=False)  # the straggler fails
    assert a.state().status is Status.HALF_OPEN
    with pytest.raises(CircuitOpen):
        b.before_request()  # still one probe only
    b.after_request(success=True)  # the straggler succeeds
    assert a.state().status is Status.HALF_OPEN
    a.after_request(success=True, probe=lease)
    assert a.state().status is Status.CLOSED


def test_d17_the_probe_lease_runs_from_the_send_and_is_set_in_the_file(namespace) -> None:
    """A worker that takes the probe and then waits for the rate must not let its lease run out in the wait
    (another probe would go): the lease is taken after the rate grant. `probe_timeout` comes from the file."""
    from rl_pipeline.client import ApiClient
    from rl_pipeline.errors import Blocked
    from rl_pipeline.sources import RateLimitSpec, load_sources
    from rl_pipeline.state import open_store

    spec = load_sources().apis["demo"]
    breaker_spec = spec.circuit_breaker.model_copy(update={"cooldown": 1.0, "probe_timeout": 0.3, "on_open": "fail"})
    spec = spec.model_copy(update={"rate_limits": [RateLimitSpec(rate=0.5)], "circuit_breaker": breaker_spec})
    clock, store = FakeClock(), open_store("memory://")
    a, b = (ApiClient("demo", spec, token="t", store=store, clock=clock).guard("events_offset") for _ in range(2))
    assert a.breaker.policy.probe_timeout == 0.3
    a.grant(clock.now(), 60)  # the last grant before the outage: the next is two seconds away
    for _ in range(5):
        a.breaker.after_request(success=False)
    clock.advance(1.0)  # the cooldown is over; the rate has a second to go, longer than the lease
    waited = a.admit(clock.now(), 60)
    assert waited.limiter > 0.9
    assert waited.probe and a.breaker.state().probe_until == pytest.approx(waited.granted_at + 0.3, abs=1e-6)
    with pytest.raises(Blocked, match="circuit open"):
        b.admit(clock.now(), 60)  # the probe is in flight: no second one

"""One conformance suite for every algorithm on every state store, on an injected clock."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rl_pipeline.clock import FakeClock
from rl_pipeline.errors import RateLimitTimeout
from rl_pipeline.limiter import RateLimiter
from rl_pipeline.limits import Algorithm, Limit
from rl_pipeline.state import StateStore, open_store
from rl_pipeline.state.sqlite import SqliteStore

TOL = 1e-5


def limiter(store: StateStore, namespace: str, clock: FakeClock, **limits: Limit) -> RateLimiter:
    return RateLimiter(store, limits, namespace=namespace, clock=clock)


def test_token_bucket_grants_the_burst_then_one_per_interval(store, namespace) -> None:
    clock = FakeClock()
    rl = limiter(store, namespace, clock, second=Limit(rate=10, burst=5))
    assert [rl.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    assert rl.wait_time() == pytest.approx(0.1)
    clock.advance(0.1)
    assert rl.try_acquire()
    assert not rl.try_acquire()
    clock.advance(3600)  # a long idle refills to the burst, never beyond
    assert [rl.try_acquire() for _ in range(6)] == [True] * 5 + [False]


def test_leaky_bucket_spaces_grants_evenly(store, namespace) -> None:
    clock = FakeClock()
    rl = limiter(store, namespace, clock, steady=Limit(rate=4, algorithm=Algorithm.LEAKY_BUCKET))
    assert rl.try_acquire()
    assert not rl.try_acquire()
    assert rl.wait_time() == pytest.approx(0.25)
    grants = []
    for _ in range(4):
        rl.acquire()
        grants.append(clock.now())
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert gaps == pytest.approx([0.25] * 3)


def test_sliding_window_log_frees_capacity_exactly_one_period_later(store, namespace) -> None:
    clock = FakeClock()
    rl = limiter(store, namespace, clock, window=Limit(rate=3, period=1, algorithm=Algorithm.SLIDING_WINDOW_LOG))
    for _ in range(3):
        assert rl.try_acquire()
        clock.advance(0.2)
    assert not rl.try_acquire()  # t=0.6: grants at 0, 0.2, 0.4 are all in the window
    assert rl.wait_time() == pytest.approx(0.4)  # the first leaves at t=1.0
    clock.advance(0.399)
    assert not rl.try_acquire()
    clock.advance(0.001)
    assert rl.try_acquire()
    assert not rl.try_acquire()


def test_sliding_window_log_keeps_a_grant_from_a_clock_behind_as_long_as_the_last(store, namespace) -> None:
    """Two callers on one budget, the second's clock 0.5 s behind: its grant is stamped no earlier than
    the one before it, so it is not already expired when the first caller looks next."""
    ahead, behind = FakeClock(1_700_000_000.0), FakeClock(1_699_999_999.5)
    window = Limit(rate=2, period=1, algorithm=Algorithm.SLIDING_WINDOW_LOG)
    a, b = limiter(store, namespace, ahead, window=window), limiter(store, namespace, behind, window=window)
    assert a.try_acquire() and b.try_acquire()
    ahead.advance(0.6)
    assert not a.try_acquire()  # both grants are in the window [ahead - 1, ahead]
    ahead.advance(0.4)
    assert a.try_acquire()


def test_sliding_window_counter_weighs_the_previous_window(store, namespace) -> None:
    # A quarter into a one-second window, away from its edges: the Redis store's shift onto the server's
    # clock (a fraction of a millisecond here) moves no grant across one.
    clock = FakeClock(start=1_700_000_000.25)
    rl = limiter(store, namespace, clock, window=Limit(rate=10, period=1, algorithm=Algorithm.SLIDING_WINDOW_COUNTER))
    assert all(rl.try_acquire() for _ in range(10))
    assert not rl.try_acquire()
    clock.advance(1.5)  # three quarters into the next window: a quarter of the previous one counts, 2.5 used
    assert sum(rl.try_acquire() for _ in range(10)) == 7


def test_a_denial_by_one_limit_takes_nothing_from_the_others(store, namespace) -> None:
    clock = FakeClock()
    per_second = Limit(rate=100, burst=100)
    per_minute = Limit(rate=3, period=60, algorithm=Algorithm.SLIDING_WINDOW_LOG)
    both = limiter(store, namespace, clock, second=per_second, minute=per_minute)
    assert [both.try_acquire() for _ in range(5)] == [True, True, True, False, False]
    # The per-second bucket was charged 3 times, not 5: 97 tokens remain.
    only_second = limiter(store, namespace, clock, second=per_second)
    assert sum(only_second.try_acquire() for _ in range(100)) == 97


def test_dry_run_and_timeouts_consume_nothing(store, namespace) -> None:
    clock = FakeClock()
    rl = limiter(store, namespace, clock, second=Limit(rate=1, burst=1))
    assert rl.wait_time() == 0.0
    assert rl.wait_time() == 0.0
    assert rl.try_acquire()
    with pytest.raises(RateLimitTimeout, match=r"no grant within 0\.5s"):
        rl.acquire(timeout=0.5)
    assert clock.slept == []
    assert rl.acquire(timeout=1.0) == pytest.approx(1.0)


def test_a_cost_above_capacity_is_refused_at_once(store, namespace) -> None:
    rl = limiter(store, namespace, FakeClock(), second=Limit(rate=10, burst=3))
    with pytest.raises(ValueError, match="never grantable"):
        rl.acquire(cost=4)


def test_two_limiters_on_one_store_share_one_budget(store, namespace) -> None:
    clock = FakeClock()
    a = limiter(store, namespace, clock, second=Limit(rate=10, burst=4))
    b = limiter(store, namespace, clock, second=Limit(rate=10, burst=4))
    assert [a.try_acquire(), b.try_acquire(), a.try_acquire(), b.try_acquire(), a.try_acquire()] == [True] * 4 + [False]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10"])
def test_limits_reject_non_positive_or_non_numeric_rates(bad) -> None:
    with pytest.raises(ValueError, match="rate must be a positive number"):
        Limit(rate=bad)


def keeps_promise(limit: Limit, grants: list[tuple[float, float]]) -> bool:
    """Whether the grants (time, cost) keep the promise in Limit's docstring."""
    if limit.algorithm in (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET):
        for i, (ti, _) in enumerate(grants):
            total = 0.0
            for tj, cj in grants[i:]:
                total += cj
                if total > limit.capacity + limit.rate * (tj - ti) / limit.period + TOL:
                    return False
        return True
    if limit.algorithm is Algorithm.SLIDING_WINDOW_LOG:
        return all(
            sum(c for t, c in grants if ti <= t < ti + limit.period - TOL) <= limit.rate + TOL for ti, _ in grants
        )
    by_window: dict[int, float] = {}
    for t, c in grants:
        key = int(t // limit.period)
        by_window[key] = by_window.get(key, 0) + c
    aligned = all(total <= limit.rate + TOL for total in by_window.values())
    sliding = all(sum(c for t, c in grants if ti <= t < ti + limit.period) < 2 * limit.rate for ti, _ in grants)
    return aligned and sliding


LIMITS = st.builds(
    Limit,
    rate=st.sampled_from([1, 2.5, 5, 10]),
    period=st.sampled_from([0.5, 1, 3]),
    burst=st.one_of(st.none(), st.sampled_from([2, 4])),
    algorithm=st.sampled_from(list(Algorithm)),
)
# Gaps: back-to-back (bursts), anything in between, and idle spells that refill everything.
GAPS = st.one_of(st.just(0.0), st.floats(0, 0.7, allow_nan=False), st.just(10.0))
STEPS = st.lists(st.tuples(GAPS, st.sampled_from([1, 1, 1, 2])), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=LIMITS, steps=STEPS, wait_after_denial=st.booleans())
def test_no_sequence_of_acquires_breaks_the_promise(store, limit, steps, wait_after_denial) -> None:
    clock = FakeClock(start=1_700_000_000.25)
    rl = limiter(store, uuid.uuid4().hex, clock, only=limit)
    grants = []
    for dt, asked in steps:
        cost = min(asked, limit.capacity)
        clock.advance(dt)
        if rl.try_acquire(cost):
            grants.append((clock.now(), cost))
        elif wait_after_denial:
            # The promised wait is enough: after it, the same request is granted.
            wait = rl.wait_time(cost)
            assert wait > 0
            clock.advance(wait)
            assert rl.try_acquire(cost), f"still denied {wait}s after the wait it announced"
            grants.append((clock.now(), cost))
    assert keeps_promise(limit, grants)


def test_a_pause_holds_back_every_limiter_sharing_the_budget(store, namespace) -> None:
    clock = FakeClock()
    a = limiter(store, namespace, clock, second=Limit(rate=10, burst=10))
    b = limiter(store, namespace, clock, second=Limit(rate=10, burst=10))
    a.pause(2.0)
    b.pause(0.5)  # a shorter pause never cuts a longer one short
    assert not b.try_acquire()
    assert b.wait_time() == pytest.approx(2.0)
    assert b.acquire() == pytest.approx(2.0)
    assert a.try_acquire()


def increment(value: str | None) -> tuple[str, int]:
    count = int(value or 0) + 1
    return str(count), count


def test_update_is_atomic_read_modify_write(store, namespace) -> None:
    key = f"{namespace}:counter"
    assert store.get(key) is None
    assert store.update(key, increment) == 1
    assert store.update(key, increment) == 2
    assert store.get(key) == "2"
    store.delete(key)
    assert store.update(key, lambda v: ("fresh" if v is None else "stale", v)) is None
    assert store.get(key) == "fresh"
    assert store.update(key, lambda v: (None, v)) == "fresh"  # None deletes
    assert store.get(key) is None


def test_stores_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path) -> None:
    """The first openers of a file race to put it in WAL mode, a change SQLite will not wait for."""
    failures: list[Exception] = []

    def open_at(url: str, ready: threading.Barrier) -> None:
        ready.wait()
        try:
            store = SqliteStore(url)
        except sqlite3.OperationalError as exc:
            failures.append(exc)
            return
        store.update("k", increment)
        store.close()

    for i in range(100):
        url, ready = f"sqlite:///{tmp_path}/state-{i}.sqlite", threading.Barrier(8)
        threads = [threading.Thread(target=open_at, args=(url, ready)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, f"{url}: {failures[0]}"
        assert SqliteStore(url).get("k") == "8"


CONTENDERS, INCREMENTS = 4, 150


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_update_holds_under_contention_across_processes(kind: str, tmp_path, namespace, request) -> None:
    """Processes incrementing one key at once lose no increment, and each gets a verdict no other got."""
    url = f"sqlite:///{tmp_path}/state.sqlite" if kind == "sqlite" else request.getfixturevalue("redis_url")
    key = f"{namespace}:contended"
    script = (
        "import sys\n"
        "from rl_pipeline.state import open_store\n"
        "from rl_pipeline_tests.test_limiter_conformance import increment\n"
        "store = open_store(sys.argv[1])\n"
        f"print(*(store.update(sys.argv[2], increment) for _ in range({INCREMENTS})))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, url, key], stdout=subprocess.PIPE, text=True)
        for _ in range(CONTENDERS)
    ]
    verdicts = [int(v) for process in processes for v in process.communicate(timeout=120)[0].split()]
    assert all(process.returncode == 0 for process in processes)
    assert sorted(verdicts) == list(range(1, CONTENDERS * INCREMENTS + 1))
    store = open_store(url)
    assert store.get(key) == str(CONTENDERS * INCREMENTS)
    store.close()


def test_hosts_whose_clocks_disagree_share_one_redis_budget(redis_url, namespace) -> None:
    """Two hosts, the second's clock 2 s ahead of the first's, each opening its store on its own clock."""
    from rl_pipeline.state.redis import RedisStore

    def grants(store_a: StateStore, store_b: StateStore, clock_a: FakeClock, clock_b: FakeClock, ns: str) -> int:
        a = RateLimiter(store_a, {"second": Limit(rate=10, burst=10)}, namespace=ns, clock=clock_a)
        b = RateLimiter(store_b, {"second": Limit(rate=10, burst=10)}, namespace=ns, clock=clock_b)
        return sum(a.try_acquire() + b.try_acquire() for _ in range(10))  # no time passes: one burst in all

    clock_a, clock_b = FakeClock(1_700_000_000.0), FakeClock(1_700_000_002.0)
    assert grants(RedisStore(redis_url, clock_a), RedisStore(redis_url, clock_b), clock_a, clock_b, namespace) == 10
    # The control: stores that take the hosts' times as they are let the host ahead refill on every turn.
    unaware = RedisStore(redis_url, FakeClock(1_700_000_000.0)), RedisStore(redis_url, FakeClock(1_700_000_000.0))
    assert grants(*unaware, clock_a, clock_b, namespace + "-control") > 10


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_d8_a_limit_whose_algorithm_changes_starts_afresh(store, namespace, algorithm: Algorithm) -> None:
    """The sources file said token bucket, then another algorithm, while the first one's state was stored."""
    clock = FakeClock()
    before = Algorithm.TOKEN_BUCKET if algorithm != Algorithm.TOKEN_BUCKET else Algorithm.SLIDING_WINDOW_LOG
    old = limiter(store, namespace, clock, per_second=Limit(rate=5, algorithm=before))
    assert sum(old.try_acquire() for _ in range(10)) == 5
    new = limiter(store, namespace, clock, per_second=Limit(rate=5, algorithm=algorithm))
    assert new.try_acquire()  # no "user-defined function raised exception", no Lua error
    assert new.wait_time() >= 0


def test_d8_an_error_inside_an_update_is_the_callers_own(store, namespace) -> None:
    def broken(value: str | None) -> tuple[str, None]:
        raise KeyError("the caller's own mistake")

    with pytest.raises(KeyError, match="the caller's own mistake"):
        store.update(f"{namespace}:k", broken)


def test_d3_a_grant_is_stamped_when_decided_not_when_its_caller_came(tmp_path) -> None:
    """SQLite: a caller that waited for the write lock must not be stamped with the time it started waiting,
    or its log entry leaves the window early and the next grant comes less than a period after it."""
    import sqlite3
    import threading
    import time

    from rl_pipeline.clock import SYSTEM_CLOCK

    url = f"sqlite:///{tmp_path}/s.sqlite"
    log = {"one": Limit(rate=1, period=1.0, algorithm=Algorithm.SLIDING_WINDOW_LOG)}
    first, second = (RateLimiter(open_store(url), log, namespace="d3", clock=SYSTEM_CLOCK) for _ in range(2))
    holder = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 0.3 s
    waiter = threading.Thread(target=first.acquire)
    waiter.start()
    time.sleep(0.3)
    released = time.time()
    holder.execute("COMMIT")
    waiter.join()
    earliest_next = time.time() + second.wait_time()
    assert earliest_next >= released + 1.0 - 0.01  # a full period after the first grant was really decided

"""The learned pace: exact on a fake clock over every store, then against the demo API."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest

from rl_pipeline.client import ApiClient
from rl_pipeline.clock import FakeClock
from rl_pipeline.demo_api import day_records
from rl_pipeline.demo_api.limits import ServerLimit
from rl_pipeline.pace import LearnedPace, PacePolicy, PaceState, Refusal, describe_pace
from rl_pipeline.sources import AdaptiveSpec, RateLimitSpec, load_sources
from rl_pipeline.state import open_store
from rl_pipeline_tests.support import TOKEN

PUBLISHED = PacePolicy(ceiling=20, initial=20, floor=0.2, margin=0.03)  # decrease 0.8, recover 5 s, settle 0.95


def test_paces_under_the_published_rate_until_the_server_refuses(store, namespace) -> None:
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    assert pace.rate() == pytest.approx(19.4)  # 3% under the file's rate: room for send jitter
    pace.on_success()
    clock.advance(60)
    pace.on_success()
    assert pace.rate() == pytest.approx(19.4)  # never above the ceiling less the margin
    clock.advance(0.05)

    refusal = pace.on_refused(retry_after=None)
    assert (refusal.before, refusal.after) == (pytest.approx(19.4), pytest.approx(15.52))
    assert refusal.decreased and refusal.pause == 1.0  # no Retry-After: the policy's pause
    clock.advance(0.2)
    again = pace.on_refused(retry_after=2.0)  # in flight when the first came back: the same storm
    assert not again.decreased and again.pause == 2.0
    assert pace.rate() == pytest.approx(15.52)


def refuse(pace: LearnedPace, clock: FakeClock, retry_after: float | None = None) -> Refusal:
    """A 429, and the pause every worker keeps before sending again."""
    refusal = pace.on_refused(retry_after=retry_after)
    clock.advance(refusal.pause)
    return refusal


def succeed_for(pace: LearnedPace, clock: FakeClock, seconds: float) -> None:
    for _ in range(round(seconds / 0.25)):
        clock.advance(0.25)
        pace.on_success()


TOO_HIGH = PacePolicy(ceiling=30, initial=30, floor=0.3, margin=0.05)  # 300 per 10 s against 200 per 10 s


def fill_a_window(pace: LearnedPace, clock: FakeClock, requests: int, rate: float) -> None:
    for _ in range(requests):
        pace.on_success()
        clock.advance(1 / rate)


def refused_twice(pace: LearnedPace, clock: FakeClock) -> float:
    """A 429 at the cap, 5 s of successes back to where it settled, a second there, another 429: the second
    lowers where the pace settles. Returns its rate."""
    pace.on_success()
    clock.advance(0.05)
    refuse(pace, clock)
    succeed_for(pace, clock, 6.0)
    return refuse(pace, clock).before


@pytest.mark.parametrize("paced_for", [0.05, 9.0])
def test_the_first_429_settles_the_pace_under_the_rate_that_drew_it(store, namespace, paced_for: float) -> None:
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    pace.on_success()
    succeed_for(pace, clock, paced_for - 0.05)
    clock.advance(0.05)
    assert refuse(pace, clock).after == pytest.approx(15.52)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(0.95 * 19.4)  # not back at the cap: nothing says the cap was right


def test_storms_in_a_row_settle_it_lower_each_time_then_it_only_probes(store, namespace) -> None:
    """A file far above the server's rate: each storm soon after the last settles 5% lower, then 10%, then 15%."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    refused = refused_twice(pace, clock)
    low, target = 0.8 * refused, 0.95**2 * refused
    succeed_for(pace, clock, 2.5)  # half way back
    assert pace.rate() == pytest.approx(low + (target - low) * 0.5, abs=1e-6)
    succeed_for(pace, clock, 2.5)
    assert pace.rate() == pytest.approx(target, abs=1e-6)
    succeed_for(pace, clock, 4.0)  # probing at 0.05% of the refused rate a second
    assert pace.rate() == pytest.approx(target + 0.0005 * refused * 4, abs=1e-6)
    third = refuse(pace, clock).before  # a third storm, 4 s after it settled
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(0.95**3 * third, abs=1e-6)


@pytest.mark.parametrize(("retry_after", "under"), [(None, 0.95), (1.0, 0.98)])
def test_a_storm_after_the_settled_pace_held_a_while_settles_once_under_it(
    store, namespace, retry_after: float | None, under: float
) -> None:
    """Refused after the server took the settled pace for `recover` seconds, the pace is a little over at
    most (a no-burst server refuses on arrival jitter alone): 5% under it, not 10% (a second storm's
    square would leave the rest of a backfill 10% under the limit); 2% under it when the server named its
    wait, for another 429 would cost only that wait (one that names none may hold a window shut)."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    refused_twice(pace, clock)
    succeed_for(pace, clock, 10.0)  # climbed back in 5 s, then held there for 5
    refusal = refuse(pace, clock, retry_after)
    held = refusal.before
    assert refusal.after == refusal.back_to == pytest.approx(under * held)  # a little over at most: straight there
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(under * held, abs=1e-6)


def test_a_429_while_climbing_back_settles_under_it_alone(store, namespace) -> None:
    """A no-burst server refuses the moment the climb crosses its limit: that rate is just over it, however
    far over the cap was; the storms before it do not push where it settles lower still, and after the
    pause the pace goes straight there (no dip by `decrease` first: how far over it was is known)."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    refused_twice(pace, clock)
    succeed_for(pace, clock, 2.0)  # climbing back, not there yet
    refusal = refuse(pace, clock)
    crossed = refusal.before
    assert crossed < 0.95**2 * 19.4 and refusal.after == pytest.approx(0.95 * crossed)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(0.95 * crossed, abs=1e-6)


def test_successes_in_flight_through_the_pause_do_not_climb_it(store, namespace) -> None:
    """A slow server answers a 429 at once and a 200 after its work: requests sent before the 429 keep
    succeeding into the pause. The pace holds until everyone resumes and climbs from there; grown on them,
    it would resume closer to the rate that drew the 429."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    succeed_for(pace, clock, 2.0)
    storm = pace.on_refused(retry_after=1.0)
    for _ in range(4):  # answers to requests in flight, over the second everyone waits
        clock.advance(0.2)
        pace.on_success()
    clock.advance(0.2)
    assert pace.rate() == pytest.approx(storm.after) == pytest.approx(15.52)
    succeed_for(pace, clock, 2.5)
    assert pace.rate() == pytest.approx(storm.after + (storm.back_to - storm.after) * 0.5)


def test_a_429_as_soon_as_it_resumes_falls_again_and_settles_once_under_it(store, namespace) -> None:
    """A file 1.5x too high against a no-burst server: the rate it falls to after the first storm is still
    over, and is refused as soon as everyone resumes. It falls again; where it climbs back to is `settle`
    under that rate, not `settle` squared (a second storm at where it had settled would be): falling is what
    says how far over it was, and a climb that crosses the limit says where it is."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    succeed_for(pace, clock, 2.0)
    first = refuse(pace, clock, retry_after=1.0)
    succeed_for(pace, clock, 0.5)
    again = refuse(pace, clock, retry_after=1.0)
    assert again.before < first.back_to and again.after == pytest.approx(0.8 * again.before)
    assert again.back_to == pytest.approx(0.95 * again.before)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(0.95 * again.before)
    succeed_for(pace, clock, 1.0)
    third = refuse(pace, clock, retry_after=1.0)  # refused a second after it settled there: that pushes it lower
    assert third.back_to == pytest.approx(0.95**2 * third.before)


def test_a_429_as_the_climb_gets_where_it_settles_is_the_climb_crossing_the_limit(store, namespace) -> None:
    """A server with no burst refuses the moment the climb back crosses its limit. Where the climb meant to
    settle (`settle` under the rate that drew the first 429: a slow start's first 429 comes at 1.5x a
    second, so that can be a whisker over) is no different: refused as it gets there, the climb crossed the
    limit just under this rate, as it would have a moment before. `settle` once under it, not squared
    (that would leave the rest of a backfill 10% under the limit)."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    pace.on_success()
    clock.advance(0.05)
    refuse(pace, clock, retry_after=1.0)
    succeed_for(pace, clock, 5.25)  # at where it settles for a quarter of a second
    arrived = refuse(pace, clock, retry_after=1.0)
    assert arrived.before == pytest.approx(0.95 * 19.4, abs=0.01)
    assert arrived.after == arrived.back_to == pytest.approx(0.95 * arrived.before)  # straight there
    succeed_for(pace, clock, 1.0)
    assert pace.rate() == pytest.approx(0.95 * arrived.before)


def test_a_429_as_soon_as_it_resumes_is_judged_by_what_the_spell_took(store, namespace) -> None:
    """Refused within a second of resuming from a storm, the server is still full from it (a window that
    counts refused requests lets a few through as it drains): no new storm at this rate. Under what the
    spell took, the pace stays and everyone waits longer; over it, the pace falls under it."""
    clock = FakeClock()
    pace, began = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock), clock.now()
    fill_a_window(pace, clock, 194, 19.4)  # 10 s at the pace
    storm = pace.on_refused(retry_after=None)
    clock.advance(storm.pause)
    fill_a_window(pace, clock, 8, storm.after)
    still = pace.on_refused(retry_after=None)  # it took 202 in 11.5 s: 17.6 a second, over this pace
    assert not still.decreased and still.after == still.before and still.pause == 2.0
    clock.advance(still.pause + 3.0)
    fill_a_window(pace, clock, 8, storm.after)
    shut = pace.on_refused(retry_after=None)
    taken = 210 / (clock.now() - began)  # 12.5 a second
    assert shut.window_took == pytest.approx(taken) and shut.after == pytest.approx(0.95 * taken)
    assert shut.after < 0.8 * shut.before  # not an ordinary storm's cut


def test_a_429_on_resuming_from_a_wait_the_server_named_is_a_storm_not_a_window(store, namespace) -> None:
    """As above, but the server named its wait and everyone kept it: it was not still full from before, it
    refuses this pace, and what the spell took (a slow start, a pause) says nothing of its limit."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    fill_a_window(pace, clock, 194, 19.4)
    storm = pace.on_refused(retry_after=1.0)
    clock.advance(storm.pause)
    fill_a_window(pace, clock, 8, storm.after)
    again = pace.on_refused(retry_after=1.0)
    assert again.window_took is None and again.pause == 1.0
    assert again.after == pytest.approx(0.8 * again.before)  # a storm in a row


def against(server: ServerLimit, pace: LearnedPace, clock: FakeClock, named_wait: bool) -> tuple[int, list[float]]:
    """120 s of one worker paced by `pace` against `server`: the successes, and when each 429 came (s in).
    With `named_wait`, each 429 names the server's wait in whole seconds, rounded up, as Retry-After does."""
    began, served, refused = clock.now(), 0, []
    while clock.now() - began < 120:
        admitted, wait = server.admit(clock.now())
        if admitted:
            served += 1
            pace.on_success()
            clock.advance(1 / pace.rate())
        else:
            refused.append(clock.now() - began)
            clock.advance(pace.on_refused(retry_after=max(1, math.ceil(wait)) if named_wait else None).pause)
    return served, refused


def test_a_counter_still_full_after_a_storm_costs_no_storms_in_a_row(store, namespace) -> None:
    """A sliding-window counter of 200 per 10 s that counts refused requests and names no wait, against a
    file 1.5x too high: after the first storm it lets a few through each time the pause ends, and shuts
    again. Read as storms in a row, each cut 20% and settled 5% lower (8.5 to 12 s in, a 120-s run took
    1,995-2,039); read as the window still shut, the pace settles under what the server took."""
    for phase in (6.25, 7.5, 8.75):  # where the first storm falls in the server's window
        clock = FakeClock(1_700_000_000.0 + phase)
        pace = LearnedPace(store, f"{namespace}:{phase}", TOO_HIGH, clock)
        server = ServerLimit("sliding_window_counter", 200, 10, burst=1, count_refused=True, now=clock.now())
        served, refused = against(server, pace, clock, named_wait=False)
        assert served >= 0.92 * 120 * 20, phase
        assert len(refused) <= 0.005 * served, phase


def test_a_lone_429_at_the_settled_pace_is_jitter_and_where_it_settled_stays(store, namespace) -> None:
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    refused = refused_twice(pace, clock)
    succeed_for(pace, clock, 40.0)
    settled = 0.95**2 * refused
    lone = refuse(pace, clock)  # alone, 40 s after the last: a request that arrived a little early
    assert lone.decreased and lone.back_to == pytest.approx(settled, abs=1e-6)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(settled, abs=1e-6)  # where it had settled, not under the lone 429


def test_the_first_429_after_ten_seconds_at_the_cap_is_jitter_too(store, namespace) -> None:
    """Paced at the file's rate for as long as a held pace (2 x `recover`) with no 429, one refusal is a
    request that reached a no-burst server a little early, not a limit under the file's: after the pause the
    pace stays at the cap, where settling under it would cost 5% until the probe climbed back. One soon
    after it is news: it settles."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    succeed_for(pace, clock, 11.0)
    lone = refuse(pace, clock)
    assert not lone.decreased and lone.after == lone.back_to == pytest.approx(19.4) and lone.pause == 1.0
    assert "lone 429s only, taken for arrival jitter: 19.40 req/s stands" in describe_pace(pace)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(19.4)
    succeed_for(pace, clock, 5.0)
    again = refuse(pace, clock)
    assert again.back_to == pytest.approx(0.95 * again.before)
    assert f"the server's limit <= {again.before:.2f}" in describe_pace(pace)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(0.95 * again.before)


def test_growth_needs_successes_an_idle_hour_brings_nothing_back(store, namespace) -> None:
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    refused = refused_twice(pace, clock)
    clock.advance(3600)
    assert pace.rate() == pytest.approx(0.8 * refused)  # no success heard of since the 429
    pace.on_success()
    clock.advance(0.5)
    assert pace.rate() == pytest.approx(0.8 * refused + (0.95**2 - 0.8) * refused * 0.1, abs=1e-6)


def test_refused_again_with_nothing_between_waits_longer_but_does_not_cut_again(store, namespace) -> None:
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PUBLISHED, clock)
    pace.on_success()
    clock.advance(0.05)
    pauses = []
    for _ in range(4):  # a server that counts refused requests: each probe after the pause is refused too
        pauses.append(pace.on_refused(retry_after=None).pause)
        clock.advance(pauses[-1])
    assert pauses == [1.0, 2.0, 4.0, 8.0]
    # One decrease for the whole episode: one success is not a second's worth, and says nothing of a window.
    assert pace.rate() == pytest.approx(15.52)
    pace.on_success()
    clock.advance(1.5)
    later = pace.on_refused(retry_after=None)  # a success came between: this is news, and the pause starts over
    assert later.decreased and later.pause == 1.0


def test_a_window_held_shut_brings_the_pace_down_to_what_the_server_took(store, namespace) -> None:
    """A sliding window of 200 per 10 s that counts refused requests, and names no wait: filled at the
    file's pace in 7 s, it stays shut until the first of them ages out, whatever the pace."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", TOO_HIGH, clock)
    fill_a_window(pace, clock, 200, pace.rate())
    began = clock.now() - 200 / 28.5
    storm = pace.on_refused(retry_after=None)
    assert (storm.before, storm.after) == (pytest.approx(28.5), pytest.approx(22.8))
    clock.advance(storm.pause)
    early = pace.on_refused(retry_after=None)  # 8 s in: 200 taken is 25 a second, above the pace: no news
    assert not early.decreased
    clock.advance(early.pause)
    shut = pace.on_refused(retry_after=None)  # 10 s in, still shut: 200 in 10 s is what the window allows
    taken = 200 / (clock.now() - began)
    assert shut.decreased and shut.after == pytest.approx(0.95 * taken, rel=1e-3)
    clock.advance(shut.pause)
    fill_a_window(pace, clock, 100, shut.after)
    assert pace.rate() == pytest.approx(0.95 * taken, rel=1e-3)  # it stays there; it does not climb back to 27


def test_a_slow_start_that_filled_a_window_falls_to_what_the_window_took(store, namespace) -> None:
    """An unpublished limit of 200 per 10 s: the slow start has grown far past 20 a second by the time the
    window is full, and the window stays shut for seconds. The refused probes say what it allows."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PacePolicy(ceiling=1000, initial=5, floor=0.1), clock)
    began = clock.now()
    for _ in range(200):
        pace.on_success()
        clock.advance(1 / pace.rate())
    assert pace.rate() > 60
    clock.advance(pace.on_refused(retry_after=None).pause)
    while clock.now() - began < 10:  # every probe is refused until 10 s after the first request
        refused_at = clock.now()
        shut = pace.on_refused(retry_after=None)
        clock.advance(shut.pause)
    assert shut.decreased and shut.after == pytest.approx(0.95 * 200 / (refused_at - began), rel=1e-3)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(shut.after, rel=0.01)  # it settles there, not back toward the 60s


def test_a_window_that_names_its_reset_is_judged_when_the_wait_ends(store, namespace) -> None:
    """Two workers (two processes: each counts its successes in the store at most twice a second) spend a
    window of 200 per 10 s in 4 s; the server names the wait to its end. The first window is not judged:
    the count began with the busy spell, not the window. The second is, at the end of its wait: the other
    worker's last successes were not counted at the 429, and are once it has woken and asked the pace;
    the server took 200 in 10 s, the wait included, and the pace settles under that."""
    clock = FakeClock()
    workers = [LearnedPace(store, f"{namespace}:pace", TOO_HIGH, clock) for _ in range(2)]
    judged: list[Refusal | None] = []
    for _ in range(2):
        began = clock.now()
        for n in range(200):
            workers[n % 2].on_success()
            clock.advance(1 / 50)
        storm = workers[0].on_refused(retry_after=6.0)
        assert storm.window_took is None and storm.pause == 6.0
        clock.advance(storm.pause)
        workers[1].rate()  # the other wakes for its next grant
        judged.append(workers[0].on_success())
    first, counted = judged
    assert first is None
    assert counted is not None and counted.window_took == pytest.approx(201 / (clock.now() - began))
    assert counted.after == pytest.approx(0.95 * counted.window_took)
    assert workers[1].rate() == pytest.approx(counted.after)


@pytest.mark.parametrize("phase", [0.0, 2.5, 5.0, 7.5])
def test_a_fixed_window_that_names_its_reset_is_refused_a_few_times_not_every_window(store, namespace, phase) -> None:
    """A file 1.5x too high against 200 per aligned 10 s that names the wait to the window's end (rounded
    up to whole seconds, as Retry-After is): judged by what each window took, not storm by storm (one a
    window, each 0.8 or 0.95 lower, for minutes)."""
    clock = FakeClock(1_700_000_000.0 + phase)
    pace = LearnedPace(store, f"{namespace}:{phase}", TOO_HIGH, clock)
    server = ServerLimit("fixed_window", 200, 10, burst=1, count_refused=False, now=clock.now() - phase)
    served, refused = against(server, pace, clock, named_wait=True)
    assert len(refused) <= 3, refused
    assert served >= 0.9 * 120 * 20


def test_a_server_shut_for_longer_than_memory_teaches_nothing_more(store, namespace) -> None:
    """Out of an unpublished daily quota, say: refused for minutes after a short spell. What was taken over
    the first `memory` seconds may be a window; beyond that the refusals are not, and cut nothing."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", TOO_HIGH, clock)
    fill_a_window(pace, clock, 200, pace.rate())
    refusals = []
    for _ in range(8):  # probes 1, 2, 4 ... 128 s apart
        refusals.append(pace.on_refused(retry_after=None))
        clock.advance(refusals[-1].pause)
    last_success = 200 / 28.5
    cut_at = [sum(r.pause for r in refusals[:i]) for i, r in enumerate(refusals) if i and r.decreased]
    assert cut_at and all(t <= 30 for t in cut_at)
    assert refusals[-1].after == min(r.after for r in refusals) > 0.95 * 200 / (last_success + 30)


def test_a_per_minute_window_held_shut_is_learned_across_its_windows(store, namespace) -> None:
    """ "120 a minute" written as `rate: 20` (a second): a sliding log that counts refused requests and names
    no wait fills in 6 s, then stays shut for most of a minute, longer than `memory`. Each spell counts the
    windows before it, so the pace comes down to what the server allows, and the refusals stop."""
    clock = FakeClock()
    pace = LearnedPace(store, f"{namespace}:pace", PacePolicy(ceiling=20, initial=20, floor=0.1), clock)
    server = ServerLimit("sliding_window_log", rate=120, period=60, burst=1, count_refused=True, now=clock.now())
    began, refused_at = clock.now(), []
    while clock.now() - began < 900:
        if server.admit(clock.now())[0]:
            pace.on_success()
            clock.advance(1 / pace.rate())
        else:
            refused_at.append(clock.now() - began)
            clock.advance(pace.on_refused(retry_after=None).pause)
    assert 1.8 < pace.rate() <= 2.0 * 1.01  # a little over at most: past it, the probe asks again rarely
    assert len([t for t in refused_at if t > 450]) <= 5  # a spell of one window each: 21, at 2.15 a second


def test_every_worker_counts_what_the_server_took(store, namespace) -> None:
    """Each worker writes its successes at most twice a second; a 429 counts its own at once, and the others
    count theirs when they next ask the pace (to wait out the pause), before a refused probe judges a window."""
    clock = FakeClock()
    workers = [LearnedPace(store, f"{namespace}:pace", TOO_HIGH, clock) for _ in range(3)]
    for i in range(300):
        workers[i % 3].on_success()
        clock.advance(0.01)

    def served() -> int:
        return PaceState.decode(store.get(f"{namespace}:pace")).served

    for worker in workers:
        worker.rate()  # no 429: asking the pace is a read, nothing more
    assert 300 - 3 * 50 <= served() < 300
    workers[0].on_refused(retry_after=None)
    assert 300 - 2 * 50 <= served() < 300  # the others' last half second is still theirs alone
    for worker in workers[1:]:
        worker.rate()
    assert served() == 300


def test_an_unpublished_limit_starts_slow_and_grows_until_refused(store, namespace) -> None:
    clock = FakeClock()
    policy = PacePolicy(ceiling=1000, initial=5, floor=0.1)
    pace = LearnedPace(store, f"{namespace}:pace", policy, clock)
    assert pace.rate() == 5
    for _ in range(8):  # 2 s of successes
        pace.on_success()
        clock.advance(0.25)
    pace.on_success()
    assert pace.rate() == pytest.approx(5 * 1.5**2, rel=1e-6)
    clock.advance(600)  # idle: no growth without successes
    assert pace.rate() == pytest.approx(5 * 1.5**3, rel=1e-6)  # at most GROWTH_WITHOUT_NEWS (1 s) past the last
    again = LearnedPace(store, f"{namespace}:pace", policy, clock)
    assert again.rate() == pace.rate()  # the next run (any process) starts from what was learned


def test_the_first_429_of_a_slow_start_falls_to_the_rate_a_second_before(store, namespace) -> None:
    """A server's burst may hide the overshoot (by the first 429 the rate has grown past the limit for a while):
    it falls to the rate a second before, and climbs back toward the rate that drew the 429, no further."""
    clock = FakeClock()
    policy = PacePolicy(ceiling=1000, initial=5, floor=0.1)
    pace = LearnedPace(store, f"{namespace}:pace", policy, clock)
    succeed_for(pace, clock, 4.0)
    grown = pace.rate()  # 5 x 1.5 a second since the first success
    assert grown == pytest.approx(5 * 1.5**3.75, rel=1e-6)
    refusal = refuse(pace, clock)
    assert refusal.after == pytest.approx(grown / 1.5)
    succeed_for(pace, clock, 5.0)
    assert pace.rate() == pytest.approx(grown * 0.95)  # settles under the rate that drew the 429
    succeed_for(pace, clock, 10.0)  # then probes at 0.05% of it a second, not of the 1000/s allowed
    assert pace.rate() == pytest.approx(grown * 0.95 + 0.0005 * grown * 10)


def test_an_unpublished_limit_is_learned_against_the_demo_api(make_demo_api, tmp_path) -> None:
    server = make_demo_api(rate=6, burst=1, algorithm="leaky_bucket", limit_headers=False)
    spec = (
        load_sources()
        .apis["demo"]
        .model_copy(update={"rate_limits": [], "adaptive": AdaptiveSpec(initial_rate=30, min_rate=1, max_rate=100)})
    )
    store_url = f"sqlite:///{tmp_path}/state.sqlite"
    client = ApiClient("demo", spec, token=TOKEN, store=open_store(store_url))
    days = [date(2024, 1, 4), date(2024, 1, 23)]  # 14 + 11 pages
    got = [r for day in days for page in client.fetch_day("events_offset", day) for r in page.records]
    assert got == [r for day in days for r in day_records(42, day)]
    learned = client.pace.rate()
    assert 3 <= learned <= 6 * 1.05, learned  # from 30 down to about the real 6 req/s, settling
    first_run_429s = client.stats.rate_limited
    assert first_run_429s > 0

    # A second run on the same store starts from the learned rate and is refused far less.
    server.api.reset()
    second = ApiClient("demo", spec, token=TOKEN, store=open_store(store_url))
    got = [r for page in second.fetch_day("events_offset", days[0]) for r in page.records]
    assert got == day_records(42, days[0])
    assert second.stats.rate_limited < first_run_429s


def test_a_fixed_window_that_names_its_reset_is_learned_against_the_demo_api(make_demo_api) -> None:
    """36 requests per aligned 6 s, each 429 naming the wait to the window's end; the file says 18 a second
    (3x). Once a wait is over, the run log says what the window took, and the server refuses no more."""
    server = make_demo_api(rate=36, period=6, burst=1, algorithm="fixed_window", limit_headers=False)
    spec = load_sources().apis["demo"].model_copy(update={"rate_limits": [RateLimitSpec(rate=18)]})
    lines: list[str] = []
    client = ApiClient("demo", spec, token=TOKEN, store=open_store("memory://"),
                       on_event=lambda kind, line: lines.append(line))  # fmt: skip
    days = [date(2024, 1, 1) + timedelta(days=n) for n in range(40)]  # ~140 pages: the first window's count
    got = [r for day in days for page in client.fetch_day("events_offset", day) for r in page.records]
    assert got == [r for day in days for r in day_records(42, day)]
    judged = [line for line in lines if "until its window's end" in line]  # began with the run: not judged
    assert len(judged) == 1, lines
    took = float(judged[0].split("the server took ")[1].split(" req/s")[0])
    assert 36 / 7 <= took <= 36 / 5  # 6 a second, give or take the second Retry-After rounds up
    requests = server.api.stats()["requests"]
    refused = [t for t, status, *_ in requests if status == 429]
    assert 1 <= len(refused) <= 4 and len(requests) > 3 * 36
    assert requests[-1][0] - refused[-1] > 6  # a whole window and more after the last 429


def test_a_pace_kept_by_an_earlier_version_is_read_as_what_it_knew() -> None:
    """Six fields (base, since, refused_at_rate, last_success, last_429, strikes): a 429 it remembers was a
    storm, not a lone one taken for jitter; one with no 429 learned nothing yet."""
    refused = PaceState.decode("15.52,1700000000.0,19.4,1700000010.0,1700000000.0,0")
    assert (refused.refused_at_rate, refused.streak, refused.served) == (19.4, 1, 0)
    assert PaceState.decode(f"19.4,1700000000.0,{float('inf')!r},1700000010.0,0.0,0").streak == 0
    store = open_store("memory://")
    store.set("pace", refused.encode())
    assert "the server's limit <= 19.40" in describe_pace(LearnedPace(store, "pace", PUBLISHED, FakeClock()))

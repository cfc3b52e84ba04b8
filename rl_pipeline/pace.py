"""The rate the server really allows, learned from its answers, under the file's ceiling.

A sources file says what someone believed the API allows; the server's 429s
say what it does. Every request is paced (spaced evenly, no burst) at the
rate this module gives, which:

- starts at the ceiling less a small `margin` (send-time jitter must not turn
  into 429s at a server that allows no burst), or, for an API that publishes
  no limit, at `initial` and grows by `slow_start` per second of successes;
- on a 429 falls to `decrease` times the rate that drew it (the first 429 of
  a slow start: to the rate a second earlier, which the server took, since
  its burst hides the overshoot for a while): once per storm — the 429s of
  requests already in flight, and of probes sent before anything succeeded
  again, change nothing;
- holds that pace through the pause everyone keeps (requests in flight
  succeed into it; grown on them, it would resume higher than it fell to),
  then climbs back within `recover` seconds of resuming to `settle` times
  the rate that drew the 429, `settle` squared after a second storm in a row
  at the rate it had settled at (a second or more there), cubed after a
  third (each within `memory` seconds of the last, and within `recover`
  seconds of getting there: a file far above the server's rate converges in
  a few storms, not one per 5%; a pace the server took for longer is at most
  a little over, and settles once under it, only `nudge` under it when the
  server named its wait (another 429 would cost that wait, where one that
  names none may hold a window shut); a 429 within a second of resuming
  says the rate it fell to is still over: it falls again, and settles once
  under that) — but a 429 a second or more into the climb,
  before it got there or within a second of getting there, says the climb
  crossed the server's limit just under the rate that drew it: `settle`
  times that, once; or, when the 429 came alone at a pace that had settled
  (`memory` seconds after the last, or the first after 2 x `recover` seconds
  of pacing, as long as a held pace: a request that reached the server a
  little early), where it had settled;
  where a 429 says the pace was a little over at most (these two, and a pace
  held for long), the pace goes there at once after the pause, with no fall
  by `decrease` first;
  beyond that it climbs only by `probe` of that rate per second, so a server
  that really is slower is asked again rarely;
- when a probe after a pause of its own choosing (no Retry-After) is refused
  too, with nothing taken between, the server is holding a window shut: what
  it took since the busy spell began (`recover` seconds at least, and a
  second's worth of requests), pauses included, is what its window allows,
  and the pace settles under it (not after `memory` seconds shut: that is a
  quota or an outage, not a window); a spell lasts through refusals for up to
  `horizon` seconds, so a per-minute window's second and later shuts count
  the windows before them, and the pace comes down to what the server allows
  over several windows, not one; a 429 within a second of resuming after a
  storm is the same window still shut (one that counts refused requests lets
  a few through as it drains), judged the same way, not a storm in a row:
  under what the spell took, the pace stays and everyone waits longer;
- when the server names a wait longer than `pause` (a bucket's next token
  comes sooner: it is the wait to a window's end) and up to `memory`, counts
  what it took from the end of the last such wait to the end of this one,
  the wait included, once the wait is over and every worker has counted its
  share: under `decrease` times the rate that drew the 429, that is what the
  window allows, and the pace settles under it;
- never goes above the ceiling or below `floor`, and grows only while
  requests succeed (an idle hour does not bring back a rate nobody tried).

The state lives in the store, so every worker, process and machine on one
API and credential paces together, and the next run starts from what this
one learned. Reading it is one `get`; a write happens on a 429, and at most
twice a second per process on success (on each, while a named wait lasts).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace

from rl_pipeline.clock import SYSTEM_CLOCK, Clock
from rl_pipeline.state import StateStore

GROWTH_WITHOUT_NEWS = 1.0  # seconds the rate may keep growing after the last success heard of


@dataclass(frozen=True)
class PacePolicy:
    ceiling: float  # requests/s, never exceeded
    initial: float  # requests/s where an API with no history starts
    floor: float  # requests/s, the least it falls to
    margin: float = 0.01  # pace this share under the published rate (0.5 ms at 20/s; the late-write push keeps half)
    decrease: float = 0.8  # factor on a 429
    recover: float = 5.0  # seconds to climb back to `settle` times the rate that drew the last 429
    settle: float = 0.95  # a server refuses near its limit on arrival jitter alone: stay this far under
    nudge: float = 0.98  # a pace held long, then refused with a named wait, is a little over at most: this far under
    probe: float = 0.0005  # beyond that, share of the refused rate (at most the ceiling) regained per second
    slow_start: float = 1.5  # before any 429: factor per second of successes (unpublished limits only)
    cooldown: float = 1.0  # seconds after a decrease in which 429s do not decrease again
    memory: float = 30.0  # a 429 this long after the last, at the settled pace, leaves the pace where it settled
    horizon: float = 120.0  # seconds a window may stay shut (a per-minute limit): longer, a quota or an outage
    pause: float = 1.0  # seconds every worker waits after a 429 that gives no Retry-After
    max_pause: float = 30.0  # the longest such wait, when 429s keep coming with nothing in between

    @property
    def held_for(self) -> float:
        """Seconds at one pace after which a 429 says it is a little over at most: a rate far over the
        limit is refused sooner (burst and all)."""
        return 2 * self.recover


@dataclass(frozen=True)
class PaceState:
    base: float  # the rate at `since`
    since: float  # when the rate was last set (a decrease, or a slow-start step)
    refused_at_rate: float = math.inf  # the rate that drew the last 429, or what a window held shut took
    last_success: float = 0.0
    last_429: float = 0.0
    strikes: int = 0  # 429s in a row with no success between them (pause lengthens with them)
    streak: int = 0  # storms in a row, each within `memory` of the last (where it settles falls faster)
    busy_since: float = 0.0  # when the requests of this busy spell began (no `memory` seconds without success)
    served: int = 0  # the successes since `busy_since`
    wait_ends: float = 0.0  # the end of the last wait a server named over `pause` (a window's end), till counted
    window: bool = False  # the count began at the end of a wait the server named: it is a window's

    def encode(self) -> str:
        times = (self.base, self.since, self.refused_at_rate, self.last_success, self.last_429, self.busy_since)
        counts = (self.strikes, self.streak, self.served, int(self.window))
        return ",".join([*map(repr, times), *map(str, counts), repr(self.wait_ends)])

    @classmethod
    def decode(cls, raw: str) -> PaceState:
        fields = raw.split(",")
        if len(fields) < 9:  # kept by an earlier version: what it knew (a 429 there was a storm), a spell from now
            streak = int(math.isfinite(float(fields[2])))
            return cls(*map(float, fields[:5]), strikes=int(fields[5]), streak=streak)  # type: ignore[arg-type]
        base, since, refused_at_rate, last_success, last_429, busy_since = map(float, fields[:6])
        strikes, streak, served = map(int, fields[6:9])
        window, wait_ends = (bool(int(fields[9])), float(fields[10])) if len(fields) > 9 else (False, 0.0)
        times = (base, since, refused_at_rate, last_success, last_429)
        return cls(*times, strikes, streak, busy_since, served, wait_ends, window)

    def taken(self, now: float) -> float:
        """Successes per second since the busy spell began, every pause included."""
        return self.served / (now - self.busy_since) if now > self.busy_since > 0 else math.inf


@dataclass(frozen=True)
class Refusal:
    """What one 429 changed (or the end of a wait it named, once counted): the pace before and after, how long
    everyone waits, and where the pace climbs back to within `recover` seconds; `window_took`: the requests
    per second the server took before holding its window shut, or until its window's end, when that set
    the pace."""

    before: float
    after: float
    pause: float
    back_to: float
    window_took: float | None = None

    @property
    def decreased(self) -> bool:
        return self.after < self.before


class LearnedPace:
    """The shared, learned pace of one API + credential (requests per second)."""

    def __init__(self, store: StateStore, key: str, policy: PacePolicy, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store, self.key, self.policy, self.clock = store, key, policy, clock
        self._lock = threading.Lock()
        self._pending, self._flushed = 0, -math.inf  # successes not yet counted in the store, and when last counted

    @property
    def cap(self) -> float:
        """The fastest it ever paces: the ceiling less the margin."""
        return self.policy.ceiling * (1 - self.policy.margin)

    def _state(self, raw: str | None) -> PaceState:
        if raw is None:
            return PaceState(base=min(self.cap, self.policy.initial), since=self.clock.now())
        return PaceState.decode(raw)

    def target(self, state: PaceState) -> float:
        """Where the pace settles after a 429: `settle` (to the power of the storms in a row) times the rate
        that drew it (the cap before any)."""
        return min(self.cap, state.refused_at_rate * self.policy.settle ** max(1, state.streak))

    @staticmethod
    def grown(state: PaceState, now: float) -> float:
        """Seconds the pace has grown since `since`: while successes keep coming, and until
        GROWTH_WITHOUT_NEWS after the last."""
        if state.last_success < state.since:
            return 0.0
        return max(0.0, min(now, state.last_success + GROWTH_WITHOUT_NEWS) - state.since)

    def rate_of(self, state: PaceState, now: float) -> float:
        """The pace `state` gives at `now`."""
        policy, grown = self.policy, self.grown(state, now)
        if math.isinf(state.refused_at_rate):
            rate = state.base * policy.slow_start**grown if state.base < self.cap else state.base
        else:
            target = max(state.base, self.target(state))
            climbed = state.base + (target - state.base) * min(1.0, grown / policy.recover)
            probe = policy.probe * min(policy.ceiling, state.refused_at_rate)  # not an unknown limit's 1000/s
            rate = climbed + probe * max(0.0, grown - policy.recover)
        return min(self.cap, max(policy.floor, rate))

    def rate(self) -> float:
        """Requests per second to pace at now. While 429s are coming, the successes this instance has not
        counted yet are counted first: a window held shut is judged by what every worker took before it
        shut, and workers waiting out the pause send nothing that would count them."""
        now = self.clock.now()
        state = self._state(self.store.get(self.key))
        if state.strikes and self._pending:
            pending = self._take_pending(now)

            def count(raw: str | None) -> tuple[str, PaceState]:
                counted = self._counted(self._state(raw), now, pending)
                return counted.encode(), counted

            state = self.store.update(self.key, count)
        return self.rate_of(state, now)

    def _take_pending(self, now: float) -> int:
        """The successes not yet counted in the store, now to be counted by the caller."""
        with self._lock:
            pending, self._pending, self._flushed = self._pending, 0, now
        return pending

    def on_success(self) -> Refusal | None:
        """Count the success and let the pace keep growing: written at most twice a second per process
        (with the successes counted since), and at once after a 429 (a success ends a run of refusals).
        Returns the change when what the server took until a window's end, now counted, set the pace."""
        now = self.clock.now()
        with self._lock:
            self._pending += 1
            due = now - self._flushed >= GROWTH_WITHOUT_NEWS / 2
        if not due and self._state(self.store.get(self.key)).strikes == 0:
            return None
        pending = self._take_pending(now)

        def note(raw: str | None) -> tuple[str, Refusal | None]:
            old = self._counted(self._state(raw), now, pending)
            if old.wait_ends and now >= old.wait_ends:
                return self._window_counted(old, now)
            if now < old.wait_ends and old.strikes:  # sent before the wait: every worker still counts at once
                return replace(old, last_success=max(old.last_success, now)).encode(), None
            if max(old.last_success, old.since) < now - GROWTH_WITHOUT_NEWS:
                # Growth had stopped (idle, or refused, and not resumed within the second): a new span starts
                # here, from where it got to.
                state = replace(old, base=self.rate_of(old, now), since=now, last_success=now, strikes=0)
                return state.encode(), None
            return replace(old, last_success=max(old.last_success, now), strikes=0).encode(), None

        return self.store.update(self.key, note)

    def _window_counted(self, old: PaceState, now: float) -> tuple[str, Refusal | None]:
        """At the end of a wait the server named over `pause` (a bucket's next token comes sooner: the wait is
        to a window's end), every worker has counted what it took until then (each counts its own at most
        twice a second, and at once while the wait lasts: at the 429 the others' last half second was not
        in). Under `decrease` times the rate that drew the 429, over a spell that says what a window allows,
        the window's budget was spent early: what it took, the wait included, is what the window allows, and
        the pace settles under it. Only a count that began at the end of such a wait is a window's (one from
        the busy spell's start took less, if a slow start began it, or more, if it began in the middle of a
        window): the count starts anew at the wait's end either way, and the next window is judged alone."""
        policy, before = self.policy, self.rate_of(old, now)
        took = old.taken(now)
        state = replace(
            old, last_success=now, strikes=0, busy_since=old.wait_ends, served=0, wait_ends=0.0, window=True
        )
        spent = old.window and self._spell_says(old, now, before) and took < old.refused_at_rate * policy.decrease
        if not spent or took * policy.settle >= before:
            return state.encode(), None
        after = max(policy.floor, took * policy.settle)
        state = replace(self._under_window(state, took, after), since=now)
        return state.encode(), Refusal(before, after, 0.0, after, took)

    def _counted(self, state: PaceState, now: float, successes: int) -> PaceState:
        """`state` with `successes` more served. A spell begins anew `memory` seconds after the last success,
        or `horizon` seconds after it while refusals keep coming: a per-minute window held shut is part of
        the spell (what it took over several windows is what it allows), an idle minute is not."""
        quiet = self.policy.horizon if state.strikes else self.policy.memory
        if state.busy_since == 0 or now - state.last_success > quiet:
            return replace(state, busy_since=now, served=successes, window=False)
        return replace(state, served=state.served + successes)

    def on_refused(self, retry_after: float | None) -> Refusal:
        """A 429: decrease once per storm; return the change and the pause everyone should keep."""
        now = self.clock.now()
        policy, pending = self.policy, self._take_pending(now)

        def refuse(raw: str | None) -> tuple[str, Refusal]:
            old = self._counted(self._state(raw), now, pending)
            before = self.rate_of(old, now)
            if now - old.last_429 < policy.cooldown:
                after, state, took = before, old, None  # the same storm: requests in flight when the first came back
            elif old.last_success > old.last_429:
                shut = self._still_shut(old, now, before, retry_after)
                state, took = shut or (self._storm(old, now, before, retry_after is not None), None)
                after = state.base
            else:
                after, state, took = self._refused_again(old, now, before, retry_after)
            own = min(policy.pause * 2 ** max(0, state.strikes - 1), policy.max_pause)
            wait = retry_after if retry_after is not None else own
            if state is not old:  # the pace holds through the pause and climbs from when everyone resumes
                state = replace(state, base=after, since=now + wait)
                if retry_after is not None and policy.pause < retry_after <= policy.memory:  # to a window's end
                    state = replace(state, wait_ends=now + wait)
            return state.encode(), Refusal(before, after, wait, max(after, self.target(state)), took)

        return self.store.update(self.key, refuse)

    def _storm(self, old: PaceState, now: float, before: float, named_wait: bool) -> PaceState:
        """The first 429 since a success (`named_wait`: the server named how long to wait): the state with the
        pace fallen (`base`), and what it remembers."""
        policy = self.policy
        # A refusal `memory` seconds after the last one, at a pace that had settled, is arrival jitter (a
        # request that reached the server a little early): the pace stays where it had settled. So is the first,
        # once the server has taken the file's pace for as long as a held one (a rate over its limit by more
        # than a little is refused sooner): it stays at this rate, where settling under it would cost `settle`
        # until the probe climbed back; if it was over, the next 429 comes soon and settles it. One sooner says
        # the pace is too high: it settles under this one. The first while growing unguided may come late (a
        # server's burst hid the overshoot): it falls under the rate a second before, and climbs back toward
        # this one.
        slow_starting = math.isinf(old.refused_at_rate) and policy.initial < self.cap
        calm_since, calm_for = (old.last_429, policy.memory) if old.last_429 else (old.busy_since, policy.held_for)
        isolated = calm_since > 0 and now - calm_since >= calm_for and not slow_starting
        climbed = self.grown(old, now)  # seconds since everyone resumed from the last 429 (or it was set)
        target = self.target(old)
        there_for = climbed - (policy.recover if old.base < target * (1 - 1e-9) else 0.0)  # at where it settles
        # Refused after a second of climbing, before it got where it meant to settle or within a second of
        # getting there: the climb crossed the server's limit, just under this rate, however far over the
        # storms before were (a no-burst server refuses the moment it is crossed, a whisker before or after
        # the climb ends).
        crossed = climbed >= policy.cooldown and there_for < policy.cooldown
        # Refused after holding where it settled for `recover` seconds: a rate far over the limit is refused
        # soon after it gets there, so this one is a little over at most, and it settles once under it.
        held = climbed >= policy.held_for
        # Refused sooner, as it resumed from a storm: the rate it fell to is still over, by how much nobody
        # knows; it falls again, and the climb after says where the limit is. Where it settles is not pushed
        # lower for it (`settle` squared is for a pace that got where it settled and was refused there).
        fell_short = old.streak > 0 and climbed < policy.cooldown
        streak = old.streak if isolated or fell_short else 1 if crossed or held else old.streak + 1
        if not isolated:
            # Held, with the wait named, it goes `nudge` under this, not `settle`: should that still be over,
            # the next 429 costs that wait and no more (a server that names none may hold a window shut).
            refused_at = before * policy.nudge / policy.settle if held and named_wait and not slow_starting else before
        elif old.last_429:  # where it had settled is `settle` under what drew the last storm
            refused_at = max(old.refused_at_rate, before)
        else:  # the first: `settle` under this, so that it stays at this rate
            refused_at = before / policy.settle
        state = replace(old, refused_at_rate=refused_at, last_429=now, strikes=1, streak=streak)
        if (isolated or crossed or held) and not slow_starting:
            # A little over at most, and the pause has let the server drain: straight to where it settles.
            return replace(state, base=max(policy.floor, min(before, self.target(state))))
        # Over by how much, nobody knows: fall by `decrease` (the first 429 of a slow start: to the rate a
        # second before, which the server took), and climb back to where it settles.
        after = before / policy.slow_start if slow_starting else before * policy.decrease
        return replace(state, base=max(policy.floor, after))

    def _still_shut(
        self, old: PaceState, now: float, before: float, retry_after: float | None
    ) -> tuple[PaceState, float | None] | None:
        """A 429 with no Retry-After within a second of resuming from a storm less than `memory` ago, over a
        spell that says what a window allows (a server that named its wait was waited for: it refuses the
        pace, not a window still full): a window that counts refused requests lets a few through as it
        drains, then shuts again; it is still shut, and that is no new storm at this rate. Judged as a probe
        refused with nothing taken between is: over what the spell took, the pace falls `settle` under that
        (by `decrease` at least), which it returns second; under it, the window is still full from before:
        the pace stays, and everyone waits longer. None when it is a storm."""
        policy = self.policy
        resumed = 0 < now - old.last_429 < policy.memory and self.grown(old, now) < policy.cooldown
        if retry_after is not None or not resumed or not self._spell_says(old, now, before):
            return None
        taken = old.taken(now)
        if before <= taken * policy.settle:
            return replace(old, base=before, last_429=now, strikes=2), None  # the pause doubles
        after = max(policy.floor, min(before * policy.decrease, taken * policy.settle))
        return self._under_window(replace(old, last_429=now, strikes=1), taken, after), taken

    @staticmethod
    def _under_window(state: PaceState, taken: float, after: float) -> PaceState:
        """`state` pacing at `after` once everyone resumes, and settling `settle` under `taken`: what a
        window held shut allowed."""
        return replace(state, base=after, refused_at_rate=min(state.refused_at_rate, taken), streak=1)

    def _spell_says(self, old: PaceState, now: float, before: float) -> bool:
        """Whether what the server took since the busy spell began, pauses included, says what a window
        allows: `recover` seconds at least, a second's worth of successes at `before`, the last within
        `memory` (a server shut for longer is out of a quota or down)."""
        policy = self.policy
        spell = now - old.busy_since >= policy.recover and old.served >= before
        return spell and now - old.last_success <= policy.memory

    def _refused_again(
        self, old: PaceState, now: float, before: float, retry_after: float | None
    ) -> tuple[float, PaceState, float | None]:
        """A probe after a pause, refused with nothing taken between: wait longer; and if the pause was of
        our own choosing, the server is holding a window shut: what it took since the busy spell began,
        the pauses included, is what the window allows (returned third when it sets the pace)."""
        policy, state = self.policy, replace(old, last_429=now, strikes=old.strikes + 1)
        taken = old.taken(now)
        if retry_after is not None or not self._spell_says(old, now, before) or before <= taken * policy.settle:
            return before, state, None
        after = max(policy.floor, taken * policy.settle)
        return after, self._under_window(state, taken, after), taken


def describe_pace(pace: LearnedPace) -> str:
    """`18.40 req/s (learned: the server's limit <= 19.00; the sources file allows 20)`, for status lines."""
    raw = pace.store.get(pace.key)
    state = PaceState.decode(raw) if raw else None
    rate = pace.rate()
    if state is None or math.isinf(state.refused_at_rate):
        learned = "no 429 seen" if state else "nothing learned yet"
    elif state.streak == 0:  # no storm yet: every 429 came alone, and the pace stayed where it was
        learned = f"lone 429s only, taken for arrival jitter: {pace.target(state):.2f} req/s stands"
    else:
        learned = f"learned: the server's limit <= {state.refused_at_rate:.2f}"  # a 429 there, or a window shut
    return f"{rate:.2f} req/s ({learned}; the sources file allows {pace.policy.ceiling:g})"

"""Events a run reports: one line per kind every few seconds, with a count of those held back, and none lost."""

from __future__ import annotations

import time

from rl_pipeline.clock import FakeClock
from rl_pipeline.events import Throttled


def test_a_storm_is_one_line_with_a_count() -> None:
    clock, lines = FakeClock(), []
    events = Throttled(lines.append, every=5.0, clock=clock)
    for _ in range(16):  # sixteen workers refused at once
        events("429", "HTTP 429")
    events("retry", "HTTP 503; try 2 of 8")  # another kind is not held back by the first
    clock.advance(5.0)
    events("429", "HTTP 429")
    assert lines == ["HTTP 429", "HTTP 503; try 2 of 8", "HTTP 429 (+15 more like it in the last 5s)"]


def wait_for(lines: list[str], count: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_last_of_a_storm_goes_out_when_its_seconds_are_up() -> None:
    lines: list[str] = []
    events = Throttled(lines.append, every=0.2)
    for worker in range(16):
        events("429", f"HTTP 429 at worker {worker}")
    assert lines == ["HTTP 429 at worker 0"]
    wait_for(lines, 2)
    # The latest is what the run goes on with (the pace and pause the last 429 set), and nothing else came.
    assert lines == ["HTTP 429 at worker 0", "HTTP 429 at worker 15 (+14 more like it in the last 0.2s)"]
    time.sleep(0.5)
    assert len(lines) == 2
    events("429", "HTTP 429 again")  # its seconds began when the held line went out, and are up
    assert lines[-1] == "HTTP 429 again"


def test_closing_sends_what_is_held_at_once_and_only_once() -> None:
    lines: list[str] = []
    events = Throttled(lines.append, every=0.3)
    events("429", "first")
    events("429", "second")
    events("retry", "a retry")
    events("retry", "another retry")
    events.close()
    assert lines == ["first", "a retry", "second", "another retry"]
    time.sleep(0.6)  # the timers that would have sent them are gone
    assert lines == ["first", "a retry", "second", "another retry"]

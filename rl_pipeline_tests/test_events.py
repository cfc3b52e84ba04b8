"""Events a run reports: one line per kind every few seconds, with a count of those held back."""

from __future__ import annotations

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

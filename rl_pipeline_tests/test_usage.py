"""The per-API picture's pieces that need no server: the bars `rl-pipeline status` draws."""

from __future__ import annotations

import math

from rl_pipeline.defs.usage import sparkline


def test_bars_are_full_at_the_limit_empty_at_nothing_and_never_past_full() -> None:
    assert sparkline([0, 20, 10, 2.4, 35], top=20) == " █▄▁█"


def test_with_no_published_limit_the_busiest_bar_is_full() -> None:
    assert sparkline([0, 5, 10], top=math.inf) == " ▄█"
    assert sparkline([0, 0], top=math.inf) == "  "

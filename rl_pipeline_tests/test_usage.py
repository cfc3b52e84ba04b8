"""The per-API picture's pieces that need no server: the bars `rl-pipeline status` draws."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from rl_pipeline.defs.usage import published_limit, sparkline
from rl_pipeline.sources import SHIPPED_SOURCES, load_sources


def test_bars_are_full_at_the_limit_empty_at_nothing_and_never_past_full() -> None:
    assert sparkline([0, 20, 10, 2.4, 35], top=20) == " █▄▁█"


def test_with_no_published_limit_the_busiest_bar_is_full() -> None:
    assert sparkline([0, 5, 10], top=math.inf) == " ▄█"
    assert sparkline([0, 0], top=math.inf) == "  "


def test_the_limit_line_is_the_files_published_limit_and_none_for_an_api_it_only_learns(tmp_path: Path) -> None:
    assert published_limit(load_sources().apis["demo"]) == 20
    data = yaml.safe_load(SHIPPED_SOURCES.read_text())
    data["apis"]["demo"].update(rate_limits=[], adaptive={"initial_rate": 5})
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(data))
    assert published_limit(load_sources(tmp_path / "sources.yaml").apis["demo"]) is None  # not max_rate's 1000

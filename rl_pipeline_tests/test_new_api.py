"""`rl-pipeline new-api`: a sources-file entry from one real answer, then a backfill through it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl_pipeline.cli.new_api import Guess, guess_day, guess_pagination, guess_records
from rl_pipeline.errors import UsageError
from rl_pipeline.sources import load_sources
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import TOKEN, day_range, expected_rows, table_rows

# The demo API's four styles, each as its docs would show one day's first page.
EXAMPLES = {
    "offset": ("/v1/offset/events?date=2024-01-03&limit=100", {"style": "offset", "total_path": "total"}),
    "pages": (
        "/v1/pages/events?start=2024-01-03T00:00:00Z&end=2024-01-04T00:00:00Z&per_page=100",
        {"style": "page_number", "total_pages_path": "total_pages", "size_param": "per_page"},
    ),
    "cursor": (
        "/v1/cursor/events?created_gte=1704240000&created_lt=1704326400&limit=100",
        {"style": "cursor", "cursor_path": "next_cursor", "has_more_path": "has_more"},
    ),
    "link": ("/v1/link/events?day=2024-01-03&per_page=100", {"style": "link", "size_param": "per_page"}),
}


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RL_DATA_DIR": str(workdir / "data"),
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "RL_SOURCES_FILE": str(workdir / "sources.yaml"),
    }
    return subprocess.run(
        [sys.executable, "-m", "rl_pipeline.cli", *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=workdir,
    )  # fmt: skip


@pytest.mark.parametrize("style", list(EXAMPLES))
def test_each_style_is_guessed_from_one_answer(style: str, make_demo_api, tmp_path: Path) -> None:
    server = make_demo_api()
    path, expected = EXAMPLES[style]
    done = run(tmp_path, "new-api", "shop", "--url", server.url + path, "--token-env", "RL_DEMO_API_TOKEN")
    assert done.returncode == 0, done.stderr
    spec = load_sources(tmp_path / "sources.yaml").apis["shop"]
    endpoint = spec.endpoints["events"]
    assert endpoint.pagination.model_dump().items() >= expected.items()
    assert endpoint.pagination.page_size == 100 and endpoint.id_field == "id"
    assert endpoint.records_path == ("" if style == "link" else "items" if style == "pages" else "data")
    assert spec.base_url == server.url and spec.token_env == "RL_DEMO_API_TOKEN"
    assert spec.adaptive is not None and not spec.rate_limits  # X-RateLimit-Limit says 20, not per what
    assert spec.quota is not None and spec.quota.remaining_header == "X-Quota-Remaining"
    assert "check --asset shop_events --day 2024-01-03" in done.stdout
    assert TOKEN not in done.stdout + done.stderr + (tmp_path / "sources.yaml").read_text()
    assert len(server.api.stats()["requests"]) == 1


def test_an_added_api_backfills_exactly_and_the_file_keeps_what_it_held(make_demo_api, tmp_path: Path) -> None:
    server = make_demo_api()
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "sources.yaml").write_text(
        "# my APIs\napis:\n  other:\n    base_url: http://127.0.0.1:9\n    start_date: '2024-01-01'\n"
        "    adaptive: {initial_rate: 1}\n    endpoints:\n      things:\n        path: /things\n"
        "        day: {param: d}\n        pagination: {style: offset}\n"
    )
    path, _ = EXAMPLES["cursor"]
    added = run(tmp_path, "new-api", "shop", "--url", server.url + path, "--token-env", "RL_DEMO_API_TOKEN")
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "sources.yaml").read_text().startswith("# my APIs\napis:\n  other:")
    assert set(load_sources(tmp_path / "sources.yaml").apis) == {"other", "shop"}
    again = run(tmp_path, "new-api", "shop", "--url", server.url + path, "--token-env", "RL_DEMO_API_TOKEN")
    assert again.returncode == 2 and "already describes an API named 'shop'" in again.stderr

    done = run(tmp_path, "backfill", "--asset", "shop_events", "--from", "2024-01-03", "--to", "2024-01-05")
    assert done.returncode == 0, done.stderr
    days = day_range("2024-01-03", "2024-01-05")
    count, rows = table_rows(Warehouse(tmp_path / "data" / "warehouse.duckdb"), "shop_events")
    assert rows == expected_rows(days) and count == len(rows)


def test_a_url_without_a_day_or_an_answer_without_records_is_one_clear_line(make_demo_api, tmp_path: Path) -> None:
    server = make_demo_api()
    no_day = run(tmp_path, "new-api", "shop", "--url", f"{server.url}/v1/offset/events?limit=100")
    assert no_day.returncode == 2
    assert no_day.stderr.strip().splitlines() == [
        "rl-pipeline new-api: give the URL of one day's first page, its day in one parameter (?date=2024-01-01) "
        "or two (?start=...&end=...); the URL's parameters: limit=100"
    ]
    unauthorized = run(tmp_path, "new-api", "shop", "--url", f"{server.url}/v1/offset/events?date=2024-01-03")
    assert unauthorized.returncode == 2
    assert "the server answered 401, not 200; does it want a token (--token-env)?" in unauthorized.stderr
    assert not (tmp_path / "sources.yaml").exists()


def test_days_records_and_pages_are_read_from_the_usual_shapes() -> None:
    assert guess_day({"since": "1704067200000", "until": "1704153600000"}) == (
        {"start_param": "since", "end_param": "until", "format": "epoch_ms"},
        guess_day({"date": "2024-01-01"})[1],
    )
    assert guess_day({"updated": "2024-01-01T00:00:00"})[0] == {"param": "updated", "format": "iso"}
    with pytest.raises(UsageError, match="the URL's parameters: a=2024-01-01, b=2024-01-02, c=2024-01-03"):
        guess_day({"a": "2024-01-01", "b": "2024-01-02", "c": "2024-01-03"})
    assert guess_records({"meta": {"n": 1}, "response": {"results": [{"id": 1}]}}) == ("response.results", [{"id": 1}])
    assert guess_records({"data": [], "tags": ["a"]}) == ("data", [])
    with pytest.raises(UsageError, match="found no list of records in the answer; its top-level keys: ok, n"):
        guess_records({"ok": True, "n": 3})
    stripe = guess_pagination({"data": [], "has_more": False}, {}, {"limit": "50"}, "id", Guess())
    assert stripe == {
        "style": "cursor", "cursor_param": "starting_after", "cursor_path": None, "cursor_record_field": "id",
        "has_more_path": "has_more", "limit_param": "limit", "page_size": 50,
    }  # fmt: skip
    token = guess_pagination({"items": [], "nextPageToken": "x"}, {}, {"pageSize": "10"}, "id", Guess())
    assert (token["cursor_param"], token["limit_param"], token["page_size"]) == ("pageToken", "pageSize", 10)

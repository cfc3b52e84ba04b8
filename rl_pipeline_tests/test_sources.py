"""Bad sources files are rejected at load, naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rl_pipeline.cli.schema import schema_text
from rl_pipeline.errors import SourceFileError
from rl_pipeline.sources import SHIPPED_SOURCES, load_sources


def write_variant(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(SHIPPED_SOURCES.read_text())
    change(data)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def api(data):
    return data["apis"]["demo"]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda d: api(d)["rate_limits"][0].update(rate=0), "apis.demo.rate_limits.0.rate", "greater than 0"),
        (lambda d: api(d)["rate_limits"][0].update(rate=-5), "apis.demo.rate_limits.0.rate", "greater than 0"),
        (lambda d: api(d)["rate_limits"][0].update(rate="fast"), "apis.demo.rate_limits.0.rate", "valid number"),
        (lambda d: api(d)["rate_limits"][0].update(period=0), "apis.demo.rate_limits.0.period", "greater than 0"),
        (lambda d: api(d)["rate_limits"][0].update(burst=0), "apis.demo.rate_limits.0.burst", "greater than or equal"),
        (lambda d: api(d).update(rate_limits=[]), "apis.demo", "give the published `rate_limits`, or `adaptive`"),
        (  # D1: two different limits under one name: one of them would silently not be enforced
            lambda d: api(d).update(
                rate_limits=[{"name": "a", "rate": 10}, {"name": "a", "rate": 1000, "period": 3600}]
            ),
            "apis.demo.rate_limits",
            "two different rate limits are named 'a'",
        ),
        (lambda d: api(d).update(base_url="ftp://x"), "apis.demo.base_url", "http://"),
        # D19: what loaded before and failed only at run time, or with a raw error.
        (lambda d: api(d).update(base_url="http://"), "apis.demo.base_url", "and a host"),
        (
            lambda d: api(d)["endpoints"]["events_link"].update(path="v1/link/events"),
            "apis.demo.endpoints.events_link.path",
            "must start with /",
        ),
        (
            lambda d: api(d)["endpoints"]["events_cursor"]["pagination"].update(cursor_path=None),
            "apis.demo.endpoints.events_cursor.pagination.cursor",
            "give `cursor_path`",
        ),
        (
            lambda d: api(d).update(rate_limits=[{"rate": 0.5, "algorithm": "sliding_window_log"}]),
            "apis.demo.rate_limits.0",
            "never grants one",
        ),
        (lambda d: api(d)["rate_limits"][0].update(rate=True), "apis.demo.rate_limits.0.rate", "must be a number"),
        (  # D23: a daily limit written as a log would cost milliseconds on every request
            lambda d: api(d).update(rate_limits=[{"rate": 10000, "period": 86400, "algorithm": "sliding_window_log"}]),
            "apis.demo.rate_limits.0",
            "above 1000 use sliding_window_counter",
        ),
        (
            lambda d: api(d)["endpoints"]["events_link"].update(table="Events_Offset"),
            "(top level)",
            "table 'events_offset' is written by both demo.events_link and demo.events_offset",
        ),
        (
            lambda d: api(d)["endpoints"]["events_link"].update(table="batch"),
            "(top level)",
            "table name 'batch' is the pipeline's own",
        ),
        (lambda d: api(d).pop("start_date"), "apis.demo.start_date", "Field required"),
        (
            lambda d: api(d)["endpoints"]["events_link"]["pagination"].update(style="magic"),
            "apis.demo.endpoints.events_link.pagination",
            "does not match any of the expected tags",
        ),
        (
            lambda d: api(d)["endpoints"]["events_link"].update(table="x; DROP TABLE y"),
            "apis.demo.endpoints.events_link.table",
            "not a valid name",
        ),
        (
            lambda d: api(d)["endpoints"]["events_link"].update(page_sise=5),
            "apis.demo.endpoints.events_link.page_sise",
            "not a field here",
        ),
        (
            lambda d: api(d)["endpoints"]["events_link"].update(day={"format": "%Y"}),
            "apis.demo.endpoints.events_link.day",
            "either `param`",
        ),
    ],
)
def test_a_bad_field_is_named_with_the_file(tmp_path: Path, change, field: str, reason: str) -> None:
    path = write_variant(tmp_path, change)
    with pytest.raises(SourceFileError) as caught:
        load_sources(path)
    message = str(caught.value)
    assert message.startswith(f"sources file {path}: ")
    assert field in message and reason in message


def test_a_typo_is_found_by_its_line_with_the_field_it_was_meant_to_be(tmp_path: Path) -> None:
    """As a hurried user writes it: misspelled fields in a mapping, a flow list and a tagged union."""
    text = SHIPPED_SOURCES.read_text()
    for right, wrong in [("reserve: 500", "reserv: 500"), ("{name: per_second, rate:", "{name: per_second, rat:"),
                         ("{style: link, ", "{style: link, page_sise: 5, ")]:  # fmt: skip
        assert right in text
        text = text.replace(right, wrong, 1)
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    lines = text.splitlines()
    with pytest.raises(SourceFileError) as caught:
        load_sources(path)
    problems = str(caught.value).removeprefix(f"sources file {path}: ").split("; ")
    for field, meant in [("quota.reserv", "reserve"), ("rate_limits.0.rat", "rate"),
                         ("endpoints.events_link.pagination.link.page_sise", "page_size")]:  # fmt: skip
        [problem] = [p for p in problems if p.split(": ")[1] == f"apis.demo.{field}"]
        number = int(problem.split(":")[0].removeprefix("line "))
        assert field.split(".")[-1] + ":" in lines[number - 1]  # the line it is on
        assert problem.endswith(f"not a field here (did you mean `{meant}`?)")


def test_two_endpoints_may_not_share_a_table(tmp_path: Path) -> None:
    path = write_variant(tmp_path, lambda d: api(d)["endpoints"]["events_link"].update(table="events_offset"))
    with pytest.raises(SourceFileError, match=r"table 'events_offset' is written by both demo\.events_"):
        load_sources(path)


def test_missing_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match="not found"):
        load_sources(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("apis: [unclosed")
    with pytest.raises(SourceFileError, match=f"sources file {broken}: not valid YAML"):
        load_sources(broken)
    latin1 = tmp_path / "latin1.yaml"  # D19
    latin1.write_bytes("apis: {caf\u00e9: 1}".encode("latin-1"))
    with pytest.raises(SourceFileError, match=f"sources file {latin1}: not UTF-8 text"):
        load_sources(latin1)
    with pytest.raises(SourceFileError, match=f"sources file {tmp_path}: cannot be read"):
        load_sources(tmp_path)


def test_the_environment_variable_picks_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_variant(tmp_path, lambda d: api(d).update(start_date="2020-02-02"))
    monkeypatch.setenv("RL_SOURCES_FILE", str(path))
    assert str(load_sources().apis["demo"].start_date) == "2020-02-02"


def test_common_public_api_shapes_need_no_code(tmp_path: Path) -> None:
    """Stripe-style cursor lists and GitHub-style Link headers are configuration."""
    path = tmp_path / "public.yaml"
    path.write_text(
        """
apis:
  stripe:
    base_url: https://api.stripe.com
    token_env: STRIPE_API_KEY
    start_date: "2023-01-01"
    rate_limits: [{rate: 25, burst: 25}]
    endpoints:
      charges:
        path: /v1/charges
        day: {start_param: "created[gte]", end_param: "created[lt]", format: epoch}
        pagination: {style: cursor, cursor_param: starting_after, cursor_path: null,
                     cursor_record_field: id, has_more_path: has_more, limit_param: limit, page_size: 100}
        records_path: data
        table: stripe_charges
  github:
    base_url: https://api.github.com
    token_env: GITHUB_TOKEN
    start_date: "2023-01-01"
    rate_limits: [{name: hourly, rate: 5000, period: 3600, algorithm: sliding_window_counter}]
    endpoints:
      issues:
        path: /repos/dagster-io/dagster/issues
        day: {param: since, format: iso}
        params: {state: all}
        pagination: {style: link, size_param: per_page, page_size: 100}
        table: github_issues
"""
    )
    sources = load_sources(path)
    charges = sources.apis["stripe"].endpoints["charges"]
    assert charges.day.params(__import__("datetime").date(2023, 5, 1)) == {
        "created[gte]": "1682899200",
        "created[lt]": "1682985600",
    }
    assert sources.apis["github"].rate_limits[0].to_limit().rate == 5000


def test_the_shipped_json_schema_is_the_models_and_the_shipped_file_names_it() -> None:
    shipped = Path(str(SHIPPED_SOURCES)).with_name("sources.schema.json")
    assert shipped.read_text() == schema_text(), "regenerate: rl-pipeline schema > rl_pipeline/sources.schema.json"
    assert SHIPPED_SOURCES.read_text().startswith("# yaml-language-server: $schema=sources.schema.json\n")
    properties = json.loads(shipped.read_text())["$defs"]["QuotaSpec"]["properties"]
    assert {"daily", "reserve"} <= set(properties)  # what an editor completes under `quota:`

"""What each fault of the demo API must get: the data kept, or a clear error and a safe rerun."""

from __future__ import annotations

import logging
import time
from datetime import date

import dagster as dg
import pytest

from rl_pipeline.demo_api.faults import Faults
from rl_pipeline.demo_api.server import most_in_any_window
from rl_pipeline.warehouse import Warehouse
from rl_pipeline_tests.support import ADMIN, day_range, expected_rows, materialize_range, table_rows, write_sources

FAST_RETRIES = {"base_delay": 0.01, "max_delay": 0.05, "max_attempts": 3}


def error_of(result: dg.ExecuteInProcessResult, node: str) -> str:
    return str(result.failure_data_for_node(node).error)


def test_schema_drift_adds_a_column_and_older_rows_keep_null(make_demo_api, warehouse: Warehouse, store_url) -> None:
    faults = Faults(drift_from=date(2024, 1, 5))
    make_demo_api(faults=faults)
    days = day_range("2024-01-03", "2024-01-06")
    assert materialize_range(["events_offset"], days[0], days[-1], warehouse, store_url).success
    with warehouse.connect(read_only=True) as conn:
        by_day = dict(
            conn.execute(
                "SELECT CAST(_partition AS VARCHAR), count(channel) FROM events_offset GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
    assert by_day["2024-01-03"] == by_day["2024-01-04"] == 0
    assert by_day["2024-01-05"] > 0 and by_day["2024-01-06"] > 0
    assert table_rows(warehouse, "events_offset")[1] == expected_rows(days, faults=faults)


def test_a_type_change_widens_the_column_and_loses_no_value(make_demo_api, warehouse: Warehouse, store_url) -> None:
    faults = Faults(type_change_from=date(2024, 1, 5))  # from the middle of that day: its pages disagree
    make_demo_api(faults=faults)
    days = day_range("2024-01-03", "2024-01-06")
    result = materialize_range(["events_cursor"], days[0], days[-1], warehouse, store_url)
    assert result.success
    pages = {m.partition: m.metadata["pages"].value for m in result.asset_materializations_for_node("events_cursor")}
    assert pages["2024-01-05"] > 2  # pages of integers, then of text: written as two batches
    with warehouse.connect(read_only=True) as conn:
        kind = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'events_cursor' AND column_name = 'quantity'"
        ).fetchone()[0]
    assert kind == "VARCHAR"
    rows = table_rows(warehouse, "events_cursor")[1]
    expected = expected_rows(days, faults=faults)
    for row in expected.values():
        row["quantity"] = str(row["quantity"])  # the integers of the early days, as text now
    assert rows == expected


def test_a_record_without_id_fails_its_day_naming_the_page_and_keeps_the_days_before(
    make_demo_api, warehouse: Warehouse, store_url
) -> None:
    faults = Faults(missing_id_on=date(2024, 1, 5))
    server = make_demo_api(faults=faults)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(["events_offset"], "2024-01-03", "2024-01-06", warehouse, store_url, instance=instance)
    assert not result.success
    message = error_of(result, "events_offset")
    assert "source demo.events_offset, partition 2024-01-05, page 2: record" in message
    assert "has no 'id'" in message
    # The other days (fetched alongside, 4 at a time) are written and recorded as done; the failed one is not.
    done = ["2024-01-03", "2024-01-04", "2024-01-06"]
    assert instance.get_materialized_partitions(dg.AssetKey("events_offset")) == set(done)
    assert table_rows(warehouse, "events_offset")[1] == expected_rows(done)

    server.api.config.faults.missing_id_on = None  # the API is fixed; the rerun is safe and complete
    assert materialize_range(["events_offset"], "2024-01-03", "2024-01-06", warehouse, store_url).success
    assert table_rows(warehouse, "events_offset")[1] == expected_rows(day_range("2024-01-03", "2024-01-06"))


def test_d14_a_checkpoint_whose_rows_are_gone_is_not_resumed_and_resumed_days_are_checked(
    make_demo_api, warehouse: Warehouse, store_url
) -> None:
    """A day fails on page 2 after page 1 was written and checkpointed."""
    day = "2024-01-05"
    server = make_demo_api(faults=Faults(missing_id_on=date(2024, 1, 5)))
    assert not materialize_range(["events_offset"], day, day, warehouse, store_url, batch_rows=100).success
    server.api.config.faults.missing_id_on = None
    # Resumed with the warehouse intact: page 1 is not fetched again, and the day's row count is still checked.
    served_before = len(server.api.stats()["requests"])
    assert materialize_range(["events_offset"], day, day, warehouse, store_url, batch_rows=100).success
    offsets = [path for _, _, path in server.api.stats()["requests"][served_before:]]
    assert len(offsets) == len(expected_rows([day])) // 100  # every page but the first
    assert warehouse.partition_mismatches("events_offset") == (1, [])

    # The warehouse file is deleted after a failure on page 2: the rerun starts the day over.
    server.api.config.faults.missing_id_on = date(2024, 1, 5)
    warehouse.path.unlink()
    assert not materialize_range(["events_offset"], day, day, warehouse, store_url, batch_rows=100).success
    warehouse.path.unlink()
    server.api.config.faults.missing_id_on = None
    final = materialize_range(["events_offset"], day, day, warehouse, store_url, batch_rows=100)
    assert final.success, error_of(final, "events_offset")
    assert table_rows(warehouse, "events_offset")[1] == expected_rows([day])
    assert warehouse.partition_mismatches("events_offset") == (1, [])


def test_a_cursor_that_loops_back_fails_naming_the_page(make_demo_api, warehouse: Warehouse, store_url) -> None:
    make_demo_api(faults=Faults(cursor_loop_after=3))
    result = materialize_range(["events_cursor"], "2024-01-04", "2024-01-04", warehouse, store_url)
    assert not result.success
    message = error_of(result, "events_cursor")
    assert "source demo.events_cursor, partition 2024-01-04, page 5: the API led back to an earlier page" in message


@pytest.mark.parametrize(
    ("fault", "problem"),
    [("truncated_rate", "a broken body (ChunkedEncodingError)"), ("html_rate", "a body that is not JSON")],
)
def test_an_unparseable_page_fails_after_its_retries(
    fault, problem, make_demo_api, warehouse: Warehouse, store_url
) -> None:
    """D9: a connection dropped mid-body is retried like any broken answer, and named when retries run out."""
    server = make_demo_api(faults=Faults(**{fault: 1.0}))
    result = materialize_range(["events_link"], "2024-01-03", "2024-01-03", warehouse, store_url, **FAST_RETRIES)
    assert not result.success
    message = error_of(result, "events_link")
    assert f"source demo.events_link, partition 2024-01-03, page 1: {problem}" in message
    assert "gave up after 3 attempts" in message
    assert len(server.api.stats()["requests"]) == 3


def test_d9_bodies_cut_short_are_retried_and_the_day_completes(make_demo_api, warehouse: Warehouse, store_url) -> None:
    make_demo_api(faults=Faults(truncated_rate=0.3, seed=3))
    result = materialize_range(
        ["events_link"], "2024-01-03", "2024-01-04", warehouse, store_url, **{**FAST_RETRIES, "max_attempts": 8}
    )
    assert result.success
    assert table_rows(warehouse, "events_link")[1] == expected_rows(day_range("2024-01-03", "2024-01-04"))


@pytest.mark.parametrize("endpoint", ["events_cursor", "events_link"])
def test_records_repeated_across_pages_land_once(endpoint, make_demo_api, warehouse: Warehouse, store_url) -> None:
    make_demo_api(faults=Faults(repeat=7))
    days = day_range("2024-01-03", "2024-01-05")
    result = materialize_range([endpoint], days[0], days[-1], warehouse, store_url)
    assert result.success
    count, rows = table_rows(warehouse, endpoint)
    expected = expected_rows(days)
    assert count == len(expected) and rows == expected
    served = sum(m.metadata["records"].value for m in result.asset_materializations_for_node(endpoint))
    assert served == len(expected)  # rows written are unique ids, not records served


def test_5xx_are_retried_until_the_day_is_complete(make_demo_api, warehouse: Warehouse, store_url) -> None:
    server = make_demo_api(faults=Faults(seed=1, error_rate=0.2))  # seed 1: errors on draws 0, 8, 9, 13, 19
    days = day_range("2024-01-03", "2024-01-05")
    result = materialize_range(
        ["events_pages"], days[0], days[-1], warehouse, store_url, base_delay=0.01, max_delay=0.1
    )
    assert result.success
    assert table_rows(warehouse, "events_pages")[1] == expected_rows(days)
    statuses = server.api.stats()["by_status"]
    retries = sum(m.metadata["retries"].value for m in result.asset_materializations_for_node("events_pages"))
    assert retries == sum(statuses.get(s, 0) for s in ("500", "502", "503", "504")) > 0


def test_a_huge_day_streams_through_in_several_writes(make_demo_api, warehouse: Warehouse, store_url) -> None:
    faults = Faults(huge_day=date(2024, 1, 3), huge_day_records=2_500)
    make_demo_api(faults=faults)
    result = materialize_range(["events_offset"], "2024-01-03", "2024-01-03", warehouse, store_url, batch_rows=1_000)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("events_offset")
    assert materialization.metadata["pages"].value == 25 and materialization.metadata["records"].value == 2_500
    count, rows = table_rows(warehouse, "events_offset")
    assert count == 2_500 and rows == expected_rows(["2024-01-03"], faults=faults)


def test_faults_are_switched_out_of_band_over_http(make_demo_api) -> None:
    import requests

    server = make_demo_api()
    answer = requests.post(
        f"{server.url}/_admin/faults", json={"drift_from": "2024-02-01", "outage_seconds": 30}, headers=ADMIN
    )
    assert answer.status_code == 200
    assert server.api.config.faults.drift_from == date(2024, 2, 1)
    assert server.api.config.faults.outage_until > time.time() + 25
    refused = requests.post(f"{server.url}/_admin/faults", json={"no_such_switch": 1}, headers=ADMIN)
    assert refused.status_code == 400 and "unknown fault 'no_such_switch'" in refused.json()["error"]


def test_d21_the_admin_endpoints_want_the_token_and_values_of_the_right_type(make_demo_api, monkeypatch) -> None:
    import socket

    import requests

    from rl_pipeline.demo_api.server import Handler

    monkeypatch.setattr(Handler, "timeout", 1.0)  # 75 s as shipped
    server = make_demo_api()
    for call in (requests.get, requests.post):
        assert call(f"{server.url}/_admin/stats", timeout=5).status_code == 401
    assert requests.post(f"{server.url}/_admin/reset", timeout=5).status_code == 401
    assert requests.post(f"{server.url}/_admin/faults", json={"error_rate": 1.0}, timeout=5).status_code == 401
    for bad in ({"error_rate": "abc"}, {"error_rate": 2}, {"repeat": 1.5}, {"drift_from": "soon"}, [1, 2]):
        refused = requests.post(f"{server.url}/_admin/faults", json=bad, headers=ADMIN, timeout=5)
        assert refused.status_code == 400, bad
    assert server.api.config.faults == Faults()  # nothing changed by any of them
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:  # a length that would block a thread
        sock.sendall(f"POST /_admin/faults HTTP/1.1\r\nAuthorization: {ADMIN['Authorization']}\r\n".encode()
                     + b"Content-Length: -1\r\n\r\n")  # fmt: skip
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection((host, int(port)), timeout=5) as sock:  # half a request, then nothing
        sock.sendall(b"GET /v1/link/events HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert sock.recv(100) == b"" and time.monotonic() - started < 4  # closed by the server, not held


def test_the_run_log_says_what_the_run_waits_on(make_demo_api, warehouse: Warehouse, tmp_path, monkeypatch) -> None:
    """Retries with their cause, an open circuit and 429 pauses show in the run's log, a line per kind at a time."""
    breaker = {"consecutive_failures": 2, "cooldown": 0.5, "max_wait": 60}
    monkeypatch.setenv("RL_SOURCES_FILE", str(write_sources(tmp_path / "sources.yaml", circuit_breaker=breaker)))
    # The file says 20/s; the server allows 2 with no burst, and sends no headers to learn that from.
    server = make_demo_api(rate=2, burst=1, algorithm="leaky_bucket", limit_headers=False)
    instance, store = dg.DagsterInstance.ephemeral(), f"sqlite:///{tmp_path}/s.sqlite"

    def warnings_of(first: str, last: str) -> list[str]:
        result = materialize_range(
            ["events_offset"], first, last, warehouse, store, instance, base_delay=0.05, max_delay=0.2
        )
        assert result.success
        return [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.WARNING]

    server.api.config.faults.outage_until = time.time() + 1.5  # an outage as the run starts
    first = warnings_of("2024-01-03", "2024-01-03")
    assert any("HTTP 503 from /v1/offset/events" in line and "try 2 of 8" in line for line in first)
    assert any("circuit open for demo.events_offset" in line and "waiting" in line for line in first)
    # Then 14 pages one after another, into 2 a second (the first run may have met the limit already:
    # the pace it learned is where the second starts).
    both = first + warnings_of("2024-01-04", "2024-01-04")
    assert any("HTTP 429; pacing at" in line and "everyone waits" in line for line in both), both
    assert len(both) < 30  # throttled: a line per kind every 5 s, not one per request


def test_a_slow_server_gets_more_days_at_once_until_the_rate_is_used(
    make_demo_api, warehouse: Warehouse, tmp_path, monkeypatch
) -> None:
    """Every answer takes 0.3 s and the file allows 20 a second: a day at a time sends 3 a second. Days
    that finished having waited on nothing start one more at once, up to `max_workers`, and the run log
    says so; where the rate is what holds the days back, the run stays at `workers`."""
    days = day_range("2024-01-03", "2024-01-10")
    instance = dg.DagsterInstance.ephemeral()

    def run(**config: int) -> tuple[int, list[str]]:
        """How many requests the server had at once at most, and the run's lines about days at once."""
        server = make_demo_api(faults=Faults(slow_rate=1.0, slow_seconds=0.3))
        store = f"sqlite:///{tmp_path}/{len(config)}-{config['max_workers']}.sqlite"
        result = materialize_range(["events_offset"], days[0], days[-1], warehouse, store, instance, **config)
        assert result.success
        assert table_rows(warehouse, "events_offset")[1] == expected_rows(days)
        lines = [r.user_message for r in instance.all_logs(result.run_id) if "days at once" in r.user_message]
        return most_in_any_window([t for t, *_ in server.api.stats()["requests"]], 0.3), lines

    at_once, lines = run(workers=1, max_workers=4)
    assert 2 <= at_once <= 4, at_once
    assert "demo.events_offset: 2 days at once (up to 4): the last 1 waited 0.0" in lines[0], lines
    assert run(workers=1, max_workers=1) == (1, [])  # the same server, held to one

    # The file allows 4 a second: the days wait on the rate, and no more start.
    monkeypatch.setenv("RL_SOURCES_FILE", str(write_sources(tmp_path / "slow.yaml", rate_limits=[{"rate": 4}])))
    at_once, lines = run(workers=2, max_workers=8)
    assert at_once <= 2 and lines == [], lines


def test_a_host_that_never_answers_fails_the_run_within_seconds(warehouse: Warehouse, tmp_path, monkeypatch) -> None:
    """Nothing listens on the port: not an outage to wait out for 10 minutes, but one line naming host and cause."""
    monkeypatch.setenv("RL_SOURCES_FILE", str(write_sources(tmp_path / "s.yaml", base_url="http://127.0.0.1:9")))
    monkeypatch.delenv("RL_DEMO_API_URL", raising=False)
    monkeypatch.setenv("RL_DEMO_API_TOKEN", "test-token")
    started = time.monotonic()
    result = materialize_range(
        ["events_offset"], "2024-01-01", "2024-01-08", warehouse, f"sqlite:///{tmp_path}/s.sqlite"
    )
    assert not result.success and time.monotonic() - started < 30
    message = error_of(result, "events_offset")
    assert "cannot reach http://127.0.0.1:9: connection refused" in message or (
        "http://127.0.0.1:9 has never answered" in message
    )

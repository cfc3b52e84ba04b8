"""Paginators offline (one page's answer in, the next request out), then over a socket against servers
whose pages are shorter or emptier than asked (D15)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from rl_pipeline.client import ApiClient
from rl_pipeline.errors import PaginationError
from rl_pipeline.pagination import PageRequest, first_page, next_page
from rl_pipeline.sources import CursorPagination, LinkPagination, OffsetPagination, PageNumberPagination
from rl_pipeline.state import open_store
from rl_pipeline_tests.scripted_server import SECRET, Reply, ScriptedServer, scripted_server, spec_for

URL = "https://api.example.com/v1/events"
OFFSET = OffsetPagination(style="offset", page_size=3, total_path="total")
PAGES = PageNumberPagination(style="page_number", page_size=3, total_pages_path="pages")
CURSOR = CursorPagination(style="cursor", cursor_path="next", has_more_path="more")
STRIPE = CursorPagination(style="cursor", cursor_path=None, cursor_record_field="id", has_more_path="has_more")


def after(spec, params: dict[str, str], body, records: list, links: dict | None = None) -> PageRequest | None:
    return next_page(spec, PageRequest(URL, params), body, records, links or {})


def test_offset_goes_by_the_total_where_the_api_gives_one() -> None:
    start = first_page(OFFSET, URL, {"day": "2024-01-01"})
    assert start.params == {"day": "2024-01-01", "offset": "0", "limit": "3"}
    assert after(OFFSET, start.params, {"total": 7}, [1, 2, 3]).params["offset"] == "3"
    assert after(OFFSET, {"offset": "6", "limit": "3"}, {"total": 7}, [7]) is None
    # D15: the server caps pages at 2 of the 3 asked; the total says there is more.
    assert after(OFFSET, {"offset": "0", "limit": "3"}, {"total": 7}, [1, 2]).params["offset"] == "2"
    with pytest.raises(PaginationError, match="an empty page at offset 2, though the API's total is 7"):
        after(OFFSET, {"offset": "2", "limit": "3"}, {"total": 7}, [])
    no_total = OFFSET.model_copy(update={"total_path": None})
    assert after(no_total, {"offset": "0", "limit": "3"}, {}, [1, 2]) is None  # a short page is the last


def test_page_numbers_go_by_the_page_count_where_the_api_gives_one() -> None:
    assert first_page(PAGES, URL, {}).params == {"page": "1", "per_page": "3"}
    assert after(PAGES, {"page": "1"}, {"pages": 5}, [1, 2, 3]).params["page"] == "2"
    assert after(PAGES, {"page": "2"}, {"pages": 5}, []).params["page"] == "3"  # D15: an empty page 2 of 5
    assert after(PAGES, {"page": "5"}, {"pages": 5}, [1, 2, 3]) is None
    no_count = PAGES.model_copy(update={"total_pages_path": None})
    assert after(no_count, {"page": "1"}, {}, [1, 2, 3]).params["page"] == "2"
    assert after(no_count, {"page": "2"}, {}, [1]) is None


def test_cursors_from_the_body_or_the_last_record() -> None:
    assert after(CURSOR, {}, {"more": True, "next": "c2"}, [1]).params == {"cursor": "c2"}
    assert after(CURSOR, {}, {"more": False, "next": "c2"}, [1]) is None
    assert after(CURSOR, {}, {"more": True, "next": "c3"}, []).params == {"cursor": "c3"}  # empty, yet more
    assert after(STRIPE, {}, {"has_more": True}, [{"id": "a"}, {"id": "b"}]).params == {"cursor": "b"}
    assert after(STRIPE, {}, {"has_more": False}, [{"id": "a"}]) is None
    with pytest.raises(PaginationError, match="'has_more' says there is more, but the page gives no cursor"):
        after(STRIPE, {}, {"has_more": True}, [])  # D15: no last record to take the cursor from
    no_flag = CursorPagination(style="cursor", cursor_path="next")
    assert after(no_flag, {}, {"next": None}, [1]) is None


def test_links_resolve_against_the_page() -> None:
    link = LinkPagination(style="link")
    assert first_page(link, URL, {"day": "x"}).params == {"day": "x", "per_page": "100"}
    assert after(link, {}, [], [1], {"next": {"url": "?page=2"}}) == PageRequest(URL + "?page=2", {})
    assert after(link, {}, [], [1], {}) is None


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def test_d15_a_server_capping_its_pages_below_the_size_asked_still_gives_the_whole_day(server) -> None:
    """Asked for 100, served 50 at a time, total 120: the day is three pages, not one."""
    records = [{"id": i} for i in range(120)]
    server.script(
        "/v1/offset/events",
        *(Reply(200, {"data": records[i : i + 50], "total": 120}) for i in range(0, 120, 50)),
    )
    client = ApiClient("demo", spec_for(server.url), token=SECRET, store=open_store("memory://"))
    got = [r for page in client.fetch_day("events_offset", date(2024, 1, 4)) for r in page.records]
    assert got == records
    assert [seen.query.split("offset=")[1].split("&")[0] for seen in server.seen] == ["0", "50", "100"]


def test_d15_an_empty_page_where_the_api_says_there_is_more_fails_naming_the_page(server) -> None:
    server.script("/v1/cursor/events", Reply(200, {"data": [{"id": 1}], "has_more": True, "next_cursor": None}))
    client = ApiClient("demo", spec_for(server.url), token=SECRET, store=open_store("memory://"))
    with pytest.raises(PaginationError, match=r"source demo\.events_cursor, partition 2024-01-04, page 1: 'has_more'"):
        list(client.fetch_day("events_cursor", date(2024, 1, 4)))

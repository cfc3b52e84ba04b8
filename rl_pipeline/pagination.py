"""Paginators: from one page's response, where the next page is.

A position is a plain `PageRequest` (URL and query parameters), so it can be
stored as a checkpoint and a relaunched partition resumes exactly there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from rl_pipeline.errors import PaginationError
from rl_pipeline.sources import (
    CursorPagination,
    LinkPagination,
    OffsetPagination,
    PageNumberPagination,
)


@dataclass(frozen=True)
class PageRequest:
    url: str
    params: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "params": self.params}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> PageRequest:
        data = json.loads(raw)
        return cls(url=data["url"], params=dict(data["params"]))


def dig(body: Any, path: str | None) -> Any:
    """`body` at a dotted path (`""` is the body itself); None when absent."""
    if not path:
        return body
    for part in path.split("."):
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


def outline(body: Any) -> str:
    """What a body holds at its top level, for an error that must say where the records are:
    `an object with keys: data (list of 100), meta (object)`."""

    def kind(value: Any) -> str:
        if isinstance(value, list):
            return f"list of {len(value)}"
        return {dict: "object", str: "text", bool: "true/false", type(None): "null"}.get(type(value), "number")

    if isinstance(body, dict):
        keys = ", ".join(f"{key} ({kind(value)})" for key, value in list(body.items())[:12])
        return f"an object with keys: {keys or 'none'}" + (", ..." if len(body) > 12 else "")
    return f"a {kind(body)}"


def first_page(spec: Any, url: str, params: dict[str, str]) -> PageRequest:
    """The request for a day's first page."""
    match spec:
        case OffsetPagination():
            extra = {spec.offset_param: "0", spec.limit_param: str(spec.page_size)}
        case PageNumberPagination():
            extra = {spec.page_param: str(spec.first_page), spec.size_param: str(spec.page_size)}
        case CursorPagination() | LinkPagination():
            size_param = spec.limit_param if isinstance(spec, CursorPagination) else spec.size_param
            extra = {size_param: str(spec.page_size)} if size_param else {}
    return PageRequest(url, {**params, **extra})


def next_page(
    spec: Any, current: PageRequest, body: Any, records: list[Any], links: dict[str, dict[str, str]]
) -> PageRequest | None:
    """The request for the page after `current`, or None when this was the last.

    Where the API counts (a total, a page count, `has_more`), its count decides, not the page's size: a
    server may cap pages below `page_size`, or serve an empty page in the middle. Raises PaginationError
    where the API says there is more but gives no way to it."""
    match spec:
        case OffsetPagination():
            return _next_offset(spec, current, body, records)
        case PageNumberPagination():
            page = int(current.params[spec.page_param])
            total_pages = dig(body, spec.total_pages_path)
            last = page >= total_pages if isinstance(total_pages, int) else len(records) < spec.page_size
            return None if last else PageRequest(current.url, {**current.params, spec.page_param: str(page + 1)})
        case CursorPagination():
            return _next_cursor(spec, current, body, records)
        case LinkPagination():
            following = links.get("next", {}).get("url")
            # The link carries every parameter already; relative links resolve against the page's URL.
            return PageRequest(urljoin(current.url, following), {}) if following else None
    raise TypeError(f"unknown pagination spec {spec!r}")


def _next_offset(spec: OffsetPagination, current: PageRequest, body: Any, records: list[Any]) -> PageRequest | None:
    offset = int(current.params[spec.offset_param]) + len(records)
    total = dig(body, spec.total_path)
    if isinstance(total, int):
        if offset >= total:
            return None
        if not records:
            raise PaginationError(f"an empty page at offset {offset}, though the API's total is {total}")
    elif len(records) < spec.page_size:
        return None
    return PageRequest(current.url, {**current.params, spec.offset_param: str(offset)})


def _next_cursor(spec: CursorPagination, current: PageRequest, body: Any, records: list[Any]) -> PageRequest | None:
    more = dig(body, spec.has_more_path) if spec.has_more_path is not None else None
    if spec.has_more_path is not None and not more:
        return None
    if spec.cursor_record_field is not None:
        cursor = dig(records[-1], spec.cursor_record_field) if records else None
    else:
        cursor = dig(body, spec.cursor_path)
    if cursor not in (None, ""):
        return PageRequest(current.url, {**current.params, spec.cursor_param: str(cursor)})
    if more:
        raise PaginationError(
            f"{spec.has_more_path!r} says there is more, but the page gives no cursor "
            + ("(it is empty)" if not records else f"at {spec.cursor_record_field or spec.cursor_path!r}")
        )
    return None

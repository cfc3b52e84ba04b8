"""`rl-pipeline new-api NAME --url URL`: a sources-file entry written from one real answer of the API.

The URL is one day's first page as the API's docs show it
(`https://api.example.com/v1/events?date=2024-01-01&limit=100`). One request
is sent; from the URL and the answer it guesses what a user would otherwise
write by hand: which parameters ask for the day (and in what format), where
the records are, the id field, how pages follow (a `Link` header, a cursor in
the body, a page count, a total) and the published limit (the IETF
`RateLimit-Policy`; with no window published, the pace is learned with
`adaptive`). The entry is appended to the sources file and the file is
loaded again, so what is written is valid, else nothing is written. It says
what it guessed and the `check` command to try it with.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import yaml

from rl_pipeline.errors import UsageError
from rl_pipeline.headers import read_server_limit
from rl_pipeline.sources import SOURCES_FILE_ENV, load_sources

RECORD_KEYS = ("data", "items", "results", "records", "entries")  # looked at first for the records
# Where a body holds the next cursor, and the parameter that usually sends it back.
CURSOR_KEYS = {
    "next_cursor": "cursor",
    "cursor": "cursor",
    "next_page_token": "page_token",
    "nextPageToken": "pageToken",
}
TOTAL_PAGES_KEYS = ("total_pages", "totalPages", "pages", "page_count")
TOTAL_KEYS = ("total", "total_count", "totalCount", "count")
SIZE_PARAMS = ("limit", "per_page", "page_size", "pageSize", "size")
PAGE_PARAMS = ("page", "offset", "cursor", "page_token", "starting_after")
EPOCH_SECONDS = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01 UTC


@dataclass
class Guess:
    """An endpoint's entry, and what was guessed on the way (said to the user)."""

    endpoint: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_moment(value: str) -> tuple[datetime, str] | None:
    """The moment a query value names and the `day.format` that writes it, if it names one."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC), "%Y-%m-%d"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:?\d{2})?", value):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), "iso"
    if value.isdigit():
        for scale, kind in ((1, "epoch"), (1000, "epoch_ms")):
            if EPOCH_SECONDS[0] <= int(value) / scale < EPOCH_SECONDS[1]:
                return datetime.fromtimestamp(int(value) / scale, UTC), kind
    return None


def guess_day(query: dict[str, str]) -> tuple[dict[str, str], date]:
    """`day:` from the URL's parameters that hold a date: one, or the earliest and latest of two."""
    moments = {name: found for name, value in query.items() if (found := read_moment(value))}
    if not moments or len(moments) > 2:
        held = ", ".join(f"{name}={value}" for name, value in query.items()) or "none"
        raise UsageError(
            "give the URL of one day's first page, its day in one parameter (?date=2024-01-01) or two "
            f"(?start=...&end=...); the URL's parameters: {held}"
        )
    names = sorted(moments, key=lambda name: moments[name][0])
    first, kind = moments[names[0]]
    if len(names) == 1:
        return {"param": names[0], "format": kind}, first.date()
    return {"start_param": names[0], "end_param": names[1], "format": kind}, first.date()


def guess_records(body: Any) -> tuple[str, list[Any]]:
    """`records_path` and the records there: the body itself if it is a list, else the list of objects
    under a key (one level down at most)."""
    if isinstance(body, list):
        return "", body
    if not isinstance(body, dict):
        raise UsageError(f"the answer is JSON but neither a list nor an object: {type(body).__name__}")
    for path, value in _lists(body):
        if value and all(isinstance(item, dict) for item in value):
            return path, value
    for path, value in _lists(body):
        if path.rsplit(".", 1)[-1] in RECORD_KEYS:
            return path, value  # an empty day: the name says where records would be
    raise UsageError(f"found no list of records in the answer; its top-level keys: {', '.join(body) or 'none'}")


def _lists(body: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The lists in `body` and one level down, those under the usual record keys first."""
    found = [(key, value) for key, value in body.items() if isinstance(value, list)]
    for key, inner in body.items():
        if isinstance(inner, dict):
            found += [(f"{key}.{k}", v) for k, v in inner.items() if isinstance(v, list)]
    return sorted(found, key=lambda item: item[0].rsplit(".", 1)[-1] not in RECORD_KEYS)


def guess_id(records: list[Any], guess: Guess) -> str:
    fields = list(records[0]) if records and isinstance(records[0], dict) else []
    if "id" in fields or not fields:
        return "id"
    named = [name for name in fields if name.lower().endswith("id")]
    if named:
        guess.notes.append(f"id field: {named[0]!r} (no field 'id' in the records)")
        return named[0]
    guess.notes.append(f"no id-like field in the records ({', '.join(fields)}): set `id_field`")
    return "id"


def guess_pagination(
    body: Any, links: dict[str, Any], query: dict[str, str], id_field: str, guess: Guess
) -> dict[str, Any]:
    """`pagination:` from how the answer points at the next page."""
    size = next((name for name in SIZE_PARAMS if name in query), None)
    sized = {"page_size": int(query[size])} if size and query[size].isdigit() else {}
    top = body if isinstance(body, dict) else {}
    if "next" in links:
        return {"style": "link", "size_param": size, **sized}
    if cursor := next((key for key in CURSOR_KEYS if key in top and not isinstance(top[key], (list, dict))), None):
        param = CURSOR_KEYS[cursor]
        more = {"has_more_path": "has_more"} if "has_more" in top else {}
        guess.notes.append(f"cursor: read from {cursor!r}, sent back as ?{param}= (check the API's docs)")
        return {"style": "cursor", "cursor_param": param, "cursor_path": cursor, **more, "limit_param": size, **sized}
    if "has_more" in top:
        guess.notes.append(f"cursor: `has_more` and no cursor: the last record's {id_field!r} as ?starting_after=")
        return {"style": "cursor", "cursor_param": "starting_after", "cursor_path": None,
                "cursor_record_field": id_field, "has_more_path": "has_more", "limit_param": size, **sized}  # fmt: skip
    if pages := next((key for key in TOTAL_PAGES_KEYS if key in top), None):
        return {"style": "page_number", "page_param": "page", "size_param": size or "per_page",
                "total_pages_path": pages, **sized}  # fmt: skip
    total = next((key for key in TOTAL_KEYS if key in top), None)
    if total is None:
        guess.notes.append("pagination: nothing in the answer points at a next page; guessed offset/limit")
    return {"style": "offset", "limit_param": size or "limit", "total_path": total, **sized}


def guess_limits(headers: requests.structures.CaseInsensitiveDict, guess: Guess) -> dict[str, Any]:
    """`rate_limits:` where the server publishes its limit and window, else `adaptive:`."""
    seen = read_server_limit(headers, time.time())
    if seen.limit and seen.window:
        return {"rate_limits": [{"rate": seen.limit, "period": seen.window}]}
    if seen.limit:
        guess.notes.append(
            f"the server says its limit is {seen.limit:g} but not per what: the pace is learned (`adaptive`); "
            "write `rate_limits` from the API's docs if they say"
        )
    else:
        guess.notes.append("no limit in the headers: the pace is learned (`adaptive`); write `rate_limits` if known")
    return {"adaptive": {"initial_rate": 5}}


def guess_quota(headers: requests.structures.CaseInsensitiveDict, guess: Guess) -> dict[str, Any]:
    """`quota:` where a header says how much of a quota is left (`X-Quota-Remaining`), with its limit as daily."""
    remaining = next((name for name in headers if "quota" in name.lower() and "remaining" in name.lower()), None)
    if remaining is None:
        return {}
    limit = headers.get(remaining.lower().replace("remaining", "limit"), "")
    daily = {"daily": int(limit)} if limit.isdigit() and int(limit) > 0 else {}
    guess.notes.append(f"quota: {remaining} says what is left; `daily: {limit or '?'}` if the quota is per day")
    return {"quota": {**daily, "remaining_header": remaining}}


def probe(url: str, token: str | None) -> requests.Response:
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        answer = requests.get(url, headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise UsageError(f"{urlsplit(url).netloc}: no answer: {type(exc).__name__}") from None
    if answer.status_code != 200:
        hint = "; does it want a token (--token-env)?" if answer.status_code in (401, 403) and not token else ""
        raise UsageError(f"GET {urlsplit(url).path}: the server answered {answer.status_code}, not 200{hint}")
    return answer


def entry(name: str, url: str, token_env: str | None) -> tuple[dict[str, Any], Guess]:
    """The API's entry in the sources file, from one request of `url`, and what was guessed."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    guess = Guess()
    day, first_day = guess_day(query)
    answer = probe(url, os.environ.get(token_env) if token_env else None)
    guess.notes.append(f"start_date: {first_day}, the URL's day: set the first day the API holds")
    try:
        body = answer.json()
    except ValueError:
        raise UsageError(f"GET {parts.path}: the answer is not JSON ({answer.headers.get('Content-Type')})") from None
    records_path, records = guess_records(body)
    id_field = guess_id(records, guess)
    pagination = guess_pagination(body, answer.links, query, id_field, guess)
    asked = {v for k, v in day.items() if k.endswith("param")} | set(SIZE_PARAMS) | set(PAGE_PARAMS)
    endpoint = {
        "path": parts.path,
        "day": day,
        "pagination": {k: v for k, v in pagination.items() if v is not None or k == "cursor_path"},
        "records_path": records_path,
        "id_field": id_field,
        "table": re.sub(r"\W", "_", f"{name}_{parts.path.rstrip('/').rsplit('/', 1)[-1] or 'records'}".lower()),
        **({"params": rest} if (rest := {k: v for k, v in query.items() if k not in asked}) else {}),
    }
    api = {
        "base_url": f"{parts.scheme}://{parts.netloc}",
        **({"token_env": token_env} if token_env else {}),
        "start_date": first_day.isoformat(),
        **guess_limits(answer.headers, guess),
        **guess_quota(answer.headers, guess),
        "endpoints": {endpoint["table"].removeprefix(f"{name}_"): endpoint},
    }
    return api, guess


def append_api(path: Path, name: str, api: dict[str, Any]) -> None:
    """Add `name` under `apis:` at the end of the file (its comments kept), or start the file; the file
    as it was comes back if the result does not load."""
    before = path.read_text(encoding="utf-8") if path.exists() else None
    if before is not None and name in (yaml.safe_load(before) or {}).get("apis", {}):
        raise UsageError(f"{path} already describes an API named {name!r}")
    block = yaml.safe_dump({name: api}, sort_keys=False, default_flow_style=False)
    indented = "".join(f"  {line}" for line in block.splitlines(keepends=True))
    text = f"{before.rstrip()}\n{indented}" if before else f"apis:\n{indented}"
    path.write_text(text, encoding="utf-8")
    try:
        load_sources(path)
    except Exception:
        if before is None:
            path.unlink()
        else:
            path.write_text(before, encoding="utf-8")
        raise


def cmd_new_api(args: argparse.Namespace) -> int:
    path = Path(args.file or os.environ.get(SOURCES_FILE_ENV) or "sources.yaml")
    if args.token_env and not os.environ.get(args.token_env):
        raise UsageError(f"--token-env {args.token_env}: the variable is not set")
    api, guess = entry(args.name, args.url, args.token_env)
    append_api(path, args.name, api)
    endpoint = next(iter(api["endpoints"].values()))
    print(f"added API {args.name!r} to {path}: asset {endpoint['table']}, pagination {endpoint['pagination']['style']}")
    for note in guess.notes:
        print(f"  guessed: {note}")
    print(f"try it: RL_SOURCES_FILE={path} rl-pipeline check --asset {endpoint['table']} --day {api['start_date']}")
    return 0

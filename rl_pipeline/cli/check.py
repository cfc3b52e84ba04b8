"""`rl-pipeline check --asset X --day D`: what the sources file makes of a day's first pages, before a backfill.

Fetches `--pages` pages (2) through the same client as a run (the shared rate
budget and quota, so a running backfill is not overrun) and writes nothing to
the warehouse. Per page: the records found at `records_path`, how many lack
the id field, the next page's request, the rate-limit and quota headers the
server sent. Then the fields and the column types the table would give them.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from urllib.parse import urlencode

import duckdb

from rl_pipeline.cli.backfill import api_client, check_range, find_asset, missing_token
from rl_pipeline.client import Page
from rl_pipeline.errors import RlPipelineError, UsageError
from rl_pipeline.pagination import PageRequest
from rl_pipeline.sources import ApiSpec, load_sources
from rl_pipeline.warehouse import incoming_columns, to_arrow

LIMIT_HEADERS = ("ratelimit", "rate-limit", "retry-after", "quota")  # what a header's name says it is about


def cmd_check(args: argparse.Namespace) -> int:
    api, spec = find_asset(load_sources(), args.asset)
    endpoint = next(name for name, e in spec.endpoints.items() if e.table_name(name) == args.asset)
    day = date.fromisoformat(check_range(spec, args.day, args.day)[0])
    if problem := missing_token(api, spec):
        raise UsageError(problem)
    client = api_client(api, spec)
    pages: list[Page] = []
    try:
        for page in client.fetch_day(endpoint, day):
            print_page(page, spec, endpoint)
            pages.append(page)
            if len(pages) == args.pages:
                break
    except RlPipelineError as exc:
        print(f"rl-pipeline check: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if pages and pages[-1].next is not None:
        print(f"(stopped after {len(pages)} page(s): --pages {len(pages)})")
    print_columns(pages, spec.endpoints[endpoint].id_field)
    return 0


def print_page(page: Page, spec: ApiSpec, endpoint: str) -> None:
    id_field = spec.endpoints[endpoint].id_field
    without_id = sum(1 for record in page.records if not isinstance(record, dict) or record.get(id_field) is None)
    ids = f", {without_id} without the id field {id_field!r}" if without_id else f", each with {id_field!r}"
    total = f" (the API's total for the day: {page.total})" if page.total is not None else ""
    print(f"{page.where}: {len(page.records)} records{ids if page.records else ''}{total}")
    print(f"  next page: {describe_request(page.next) if page.next else 'none (the last page of the day)'}")
    remaining = spec.quota.remaining_header.lower() if spec.quota and spec.quota.remaining_header else None
    seen = {
        name: value
        for name, value in page.headers.items()
        if any(word in name.lower() for word in LIMIT_HEADERS) or name.lower() == remaining
    }
    shown = ", ".join(f"{name}: {value}" for name, value in seen.items())
    print(f"  rate-limit and quota headers: {shown or 'none'}")


def describe_request(request: PageRequest) -> str:
    return f"GET {request.url}" + (f"?{urlencode(request.params)}" if request.params else "")


def print_columns(pages: list[Page], id_field: str) -> None:
    """The fields of the records that have an id, and the DuckDB type each column would get."""
    records = [r for page in pages for r in page.records if isinstance(r, dict) and r.get(id_field) is not None]
    if not records:
        print("no records with an id to type")
        return
    batch = to_arrow(records, id_field, pages[0].where)
    with duckdb.connect() as conn:
        columns = incoming_columns(conn, batch)
    width = max(len(name) for name in columns)
    print(f"columns ({len(columns)}, from {len(records)} records):")
    for name, (kind, _) in columns.items():
        print(f"  {name:<{width}}  {kind}")

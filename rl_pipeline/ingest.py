"""One partition (a UTC day) of one endpoint, from the API into the warehouse.

Pages stream in and are written in batches; after each batch is committed,
the next page's position is kept in the state store, so a retried partition
resumes where it stopped instead of spending quota again — if the warehouse
still holds the rows written before it. A finished day clears its
checkpoint. Upsert on id makes any replay harmless.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from rl_pipeline.client import ApiClient, Page
from rl_pipeline.pagination import PageRequest
from rl_pipeline.state import keys
from rl_pipeline.warehouse import PartitionReport, TableShape, Warehouse, to_arrow

K, T = TypeVar("K"), TypeVar("T")
DEFAULT_BATCH_ROWS = 50_000  # a write (a DuckDB connection: ~0.1 s) per 50k rows; see docs/benchmarks.md
WAITS = ("limiter_wait_s", "retry_wait_s", "circuit_wait_s", "quota_wait_s")  # a day's waits on the budget
ROOM = 0.1  # days that waited on the budget less than this share of their time left it room


@dataclass
class DayResult:
    day: date
    records: int = 0  # rows written (unique ids)
    pages: int = 0
    resumed: bool = False
    new: int = 0  # of them, ids the warehouse did not hold
    changed: int = 0  # ids it held with other values: what a re-fetch of a day brought that was late
    table: TableShape | None = None  # the table once the day was written


def checkpoint_key(warehouse: Warehouse, api: str, endpoint: str, day: date) -> str:
    # The warehouse is part of the key: two warehouses fed from one store must not share positions.
    where = hashlib.sha256(str(warehouse.path.resolve()).encode()).hexdigest()[:8]
    return keys.checkpoint(where, f"{api}.{endpoint}", day.isoformat())


def _id_hash(value: object) -> int:
    return hash(str(value))  # 1 and '1': one row


def _resume_point(
    saved: str | None, warehouse: Warehouse, table: str, id_field: str, day: date, served: array
) -> PageRequest | None:
    """Where a day stopped, if the warehouse still holds what was written before it; those rows' ids
    go into `served`. A checkpoint whose rows are gone (a deleted or replaced warehouse file) is dropped:
    the day starts over from its first page."""
    if saved is None:
        return None
    data = json.loads(saved)
    written_ids = warehouse.partition_ids(table, id_field, day.isoformat())
    if len(written_ids) < max(1, data.get("written", 1)):
        return None
    served.extend(_id_hash(value) for value in written_ids)
    return PageRequest.from_json(data.get("next", saved))  # (or a bare position, as kept once)


def distinct(hashes: array) -> int:
    """How many distinct values `hashes` holds (sorted in place of a hash set: a few MB for a million ids).

    Two different ids of one day share a 64-bit hash with odds of ~1e-8 at 500k ids.
    """
    values = np.frombuffer(hashes, dtype=np.int64).copy()
    values.sort()
    return int(np.count_nonzero(np.diff(values))) + 1 if values.size else 0


def ingest_day(
    client: ApiClient,
    warehouse: Warehouse,
    endpoint: str,
    day: date,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> DayResult:
    """Fetch every page of `day` and upsert it; safe to run again at any time.

    Memory is bounded by `batch_rows`: each page becomes Arrow (columnar, a
    tenth of the size of the parsed JSON) as it arrives, and only the pages
    not yet written and the day's ids are held. A page whose types cannot be
    merged with the pages held (a field that turns from number to text) is
    written in a batch of its own, where the warehouse widens the column.
    """
    batches = _DayBatches(client, warehouse, endpoint, day)
    for page in client.fetch_day(endpoint, day, batches.start):
        batches.add(page)
        if batches.held_rows() >= batch_rows or page.next is None:
            batches.write(page.next, page.where, finished=page.next is None)
    client.store.delete(batches.key)
    return batches.result


class _DayBatches:
    """The pages of one day held for writing, the ids served, and the checkpoint after each write."""

    def __init__(self, client: ApiClient, warehouse: Warehouse, endpoint: str, day: date) -> None:
        self.client, self.warehouse, self.day = client, warehouse, day
        self.spec = client.spec.endpoints[endpoint]
        self.table = self.spec.table_name(endpoint)
        self.key = checkpoint_key(warehouse, client.name, endpoint, day)
        self.served = array("q")  # hash of every id served, for the row-count check (8 bytes an id, not ~90)
        self.start = _resume_point(
            client.store.get(self.key), warehouse, self.table, self.spec.id_field, day, self.served
        )
        self.result = DayResult(day, resumed=self.start is not None)
        self.pending: list[pa.Table] = []
        self.schema: pa.Schema | None = None
        self.api_total: int | None = None
        self.held_where = ""  # the last page held: named by a write cut short by a page that does not fit

    def held_rows(self) -> int:
        return sum(t.num_rows for t in self.pending)

    def add(self, page: Page) -> None:
        """Hold the page's records; first write those held if its types do not merge with theirs."""
        rows = to_arrow(page.records, self.spec.id_field, page.where)
        self.served.extend(_id_hash(record[self.spec.id_field]) for record in page.records)
        self.result.pages += 1
        if page.total is not None:
            self.api_total = page.total
        if rows.num_rows:
            try:
                merged = [self.schema or rows.schema, rows.schema]
                self.schema = pa.unify_schemas(merged, promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                self.write(page.request, self.held_where)
                self.schema = rows.schema
            self.pending.append(rows)
        self.held_where = page.where

    def write(self, resume_at: PageRequest | None, where: str, *, finished: bool = False) -> None:
        """Upsert what is held, then keep `resume_at` as the checkpoint. The last write of a day also notes
        what the API served for it (a resumed day: what this run was served, and the rows the pages before
        the checkpoint left)."""
        batch = pa.concat_tables(self.pending, promote_options="permissive") if self.pending else pa.table({})
        written = self.warehouse.upsert(
            self.table,
            batch,
            id_field=self.spec.id_field,
            partition=self.day.isoformat(),
            fetched_at=datetime.now(UTC),
            where=where,
            finished=PartitionReport(distinct(self.served), self.api_total) if finished else None,
            track_changes=True,
        )
        self.result.records += written.rows
        self.result.new += written.new
        self.result.changed += written.changed
        self.result.table = written.table or self.result.table
        self.pending, self.schema = [], None
        if resume_at is not None:
            state = {"next": resume_at.to_json(), "written": distinct(self.served)}
            self.client.store.set(self.key, json.dumps(state))


@dataclass
class IngestedDay:
    """One day done: what was written, what its requests cost, and the client that fetched it."""

    result: DayResult
    used: dict[str, Any]  # requests, retries, 429s, waits by cause, statuses, requests_per_s
    client: ApiClient
    seconds: float  # from its start to its last write

    @property
    def waited(self) -> float:
        """Seconds it waited on the budget: the rate, a 429's pause, an open circuit, a quota."""
        return sum(self.used[k] for k in WAITS)


def ingest_days(
    make_client: Callable[[], ApiClient],
    warehouse: Warehouse,
    endpoint: str,
    days: Sequence[date],
    *,
    workers: int = 1,
    max_workers: int = 1,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    say: Callable[[str, str], None] = lambda kind, message: None,
) -> Iterator[IngestedDay]:
    """`ingest_day` for every day, `workers` days at once, yielded as each finishes.

    When the last days to finish, as many as run at once, together waited on
    the budget (the rate, 429 pauses, an open circuit, a quota) less than a
    tenth of their time, their time went to the server's answers and to
    writes, and the budget had room: one more day runs at once from then on,
    up to `max_workers`, and `say(kind, message)` tells why (and, once, that
    `max_workers` holds the run back when the budget has room there too). So
    the rate is reached however slowly the server answers; extra days at once
    cost threads and memory, never rate: every day waits on the one budget.

    Each worker thread has a client of its own from `make_client` (a Session,
    and stats that are its day's alone); clients made on one store share one
    rate budget, breaker and quota. On the first failure no further day
    starts; those running finish and are yielded, then the failure is raised.
    The clients are closed at the end.
    """
    local, clients = threading.local(), []

    def fetch(day: date) -> IngestedDay:
        if not hasattr(local, "client"):
            local.client = make_client()
            clients.append(local.client)
        client, started = local.client, time.monotonic()
        before = client.stats.snapshot()
        result = ingest_day(client, warehouse, endpoint, day, batch_rows=batch_rows)
        used = client.stats.since(before)
        seconds = max(time.monotonic() - started, 1e-3)
        used["requests_per_s"] = round(used["requests"] / seconds, 2)
        return IngestedDay(result, used, client, seconds)

    most = max(workers, max_workers)
    finished: deque[IngestedDay] = deque()  # the last days: one alone is too few requests to judge by
    capped = False  # said that `max_workers` holds the run back

    def widen(day: IngestedDay, width: int) -> bool:
        nonlocal capped
        finished.append(day)
        while len(finished) > width:
            finished.popleft()
        waited, seconds = sum(d.waited for d in finished), sum(d.seconds for d in finished)
        if len(finished) < width or waited >= ROOM * seconds:
            return False
        spent = (
            f"the last {width} waited {waited:.2f}s of their {seconds:.2f}s on the budget (rate, 429s, circuit, quota)"
        )
        if width < most:
            say("days at once", f"{day.client.name}.{endpoint}: {width + 1} days at once (up to {most}): {spent}")
            return True
        if not capped:
            capped = True
            say(
                "max_workers",
                f"{day.client.name}.{endpoint}: `max_workers` ({most}) holds this run back, not the rate: {spent}",
            )
        return False

    try:
        yield from in_parallel(fetch, days, workers, widen=widen, most=most)
    finally:
        for client in clients:
            client.close()


def in_parallel(
    fetch: Callable[[K], T],
    keys: Sequence[K],
    workers: int,
    *,
    widen: Callable[[T, int], bool] = lambda result, width: False,
    most: int = 1,
) -> Iterator[T]:
    """`fetch(key)` for every key, `workers` at once, results as they finish; each result for which
    `widen(result, width)` is true runs one more at once from then on, up to `most` (`widen` hears of
    every result while none has failed).

    On the first failure no further key is started; those already running
    finish (their results are still yielded), then the failure is raised.
    """
    width, most = max(1, workers), max(1, workers, most)
    waiting, running = iter(keys), set[Future[T]]()
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=most, thread_name_prefix="day") as pool:
        while True:
            if failure is None:
                running.update(pool.submit(fetch, key) for key in itertools.islice(waiting, width - len(running)))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                result = future.result()
                if failure is None and widen(result, width):
                    width = min(width + 1, most)
                yield result
    if failure is not None:
        raise failure

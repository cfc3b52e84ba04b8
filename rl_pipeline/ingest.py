"""One partition (a UTC day) of one endpoint, from the API into the warehouse.

Pages stream in and are written in batches; after each batch is committed,
the next page's position is kept in the state store, so a retried partition
resumes where it stopped instead of spending quota again — if the warehouse
still holds the rows written before it. A finished day clears its
checkpoint. Upsert on id makes any replay harmless.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from rl_pipeline.client import ApiClient
from rl_pipeline.pagination import PageRequest
from rl_pipeline.state import keys
from rl_pipeline.warehouse import PartitionReport, Warehouse, to_arrow

DEFAULT_BATCH_ROWS = 50_000  # a write (a DuckDB connection: ~0.1 s) per 50k rows; see docs/benchmarks.md


@dataclass
class DayResult:
    day: date
    records: int = 0  # rows written (unique ids)
    pages: int = 0
    resumed: bool = False
    new: int = 0  # of them, ids the warehouse did not hold
    changed: int = 0  # ids it held with other values: what a re-fetch of a day brought that was late


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
    spec = client.spec.endpoints[endpoint]
    table = spec.table_name(endpoint)
    key = checkpoint_key(warehouse, client.name, endpoint, day)
    served = array("q")  # hash of every id served, for the row-count check (8 bytes an id, not a set's ~90)
    start = _resume_point(client.store.get(key), warehouse, table, spec.id_field, day, served)
    result = DayResult(day, resumed=start is not None)
    pending: list[pa.Table] = []
    schema: pa.Schema | None = None
    api_total: int | None = None
    held_where = ""  # names the last page held, for the error of a write cut short by a page that does not fit

    def write(resume_at: PageRequest | None, where: str, finished: PartitionReport | None = None) -> None:
        nonlocal pending, schema
        batch = pa.concat_tables(pending, promote_options="permissive") if pending else pa.table({})
        written = warehouse.upsert(
            table,
            batch,
            id_field=spec.id_field,
            partition=day.isoformat(),
            fetched_at=datetime.now(UTC),
            where=where,
            finished=finished,
            track_changes=True,
        )
        result.records += written.rows
        result.new += written.new
        result.changed += written.changed
        pending, schema = [], None
        if resume_at is not None:
            client.store.set(key, json.dumps({"next": resume_at.to_json(), "written": distinct(served)}))

    for page in client.fetch_day(endpoint, day, start):
        where = f"source {client.name}.{endpoint}, partition {day.isoformat()}, page {page.number}"
        rows = to_arrow(page.records, spec.id_field, where)
        served.extend(_id_hash(record[spec.id_field]) for record in page.records)
        result.pages += 1
        if page.total is not None:
            api_total = page.total
        if rows.num_rows:
            try:
                schema = pa.unify_schemas([schema or rows.schema, rows.schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                write(page.request, held_where)
                schema = rows.schema
            pending.append(rows)
        held_where = where
        if sum(t.num_rows for t in pending) >= batch_rows or page.next is None:
            # The last write of a day also notes what the API served for it (a resumed day: what this run
            # was served, and the rows the pages before the checkpoint left).
            report = PartitionReport(distinct(served), api_total) if page.next is None else None
            write(page.next, where, report)
    client.store.delete(key)
    return result

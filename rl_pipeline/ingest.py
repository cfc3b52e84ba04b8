"""One partition (a UTC day) of one endpoint, from the API into the warehouse.

Pages stream in and are written in batches; after each batch is committed,
the next page's position is kept in the state store, so a retried partition
resumes where it stopped instead of spending quota again. A finished day
clears its checkpoint. Upsert on id makes any replay harmless.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from rl_pipeline.client import ApiClient
from rl_pipeline.pagination import PageRequest
from rl_pipeline.warehouse import PartitionReport, Warehouse

DEFAULT_BATCH_ROWS = 50_000  # a write (a DuckDB connection: ~0.1 s) per 50k rows; see docs/benchmarks.md


class IngestError(ValueError):
    """A page the API served that cannot be stored; the message names source, partition and page."""


@dataclass
class DayResult:
    day: date
    records: int = 0  # rows written (unique ids)
    pages: int = 0
    resumed: bool = False


def checkpoint_key(warehouse: Warehouse, api: str, endpoint: str, day: date) -> str:
    # The warehouse is part of the key: two warehouses fed from one store must not share positions.
    where = hashlib.sha256(str(warehouse.path.resolve()).encode()).hexdigest()[:8]
    return f"ckpt:{where}:{api}.{endpoint}:{day.isoformat()}"


def ingest_day(
    client: ApiClient,
    warehouse: Warehouse,
    endpoint: str,
    day: date,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> DayResult:
    """Fetch every page of `day` and upsert it; safe to run again at any time."""
    spec = client.spec.endpoints[endpoint]
    table = spec.table_name(endpoint)
    key = checkpoint_key(warehouse, client.name, endpoint, day)
    saved = client.store.get(key)
    start = PageRequest.from_json(saved) if saved else None
    result = DayResult(day, resumed=start is not None)
    buffer: list[dict[str, Any]] = []
    served: set[Any] = set()
    api_total: int | None = None
    for page in client.fetch_day(endpoint, day, start):
        where = f"source {client.name}.{endpoint}, partition {day.isoformat()}, page {page.number}"
        for index, record in enumerate(page.records):
            if not isinstance(record, dict) or record.get(spec.id_field) is None:
                raise IngestError(f"{where}: record {index} has no {spec.id_field!r}: {str(record)[:200]}")
        result.pages += 1
        buffer.extend(page.records)
        served.update(record[spec.id_field] for record in page.records)
        if page.total is not None:
            api_total = page.total
        if len(buffer) >= batch_rows or page.next is None:
            # The last write of a day also notes what the API served for it (a resumed day saw only part).
            last = page.next is None and not result.resumed
            result.records += warehouse.upsert(
                table,
                buffer,
                id_field=spec.id_field,
                partition=day.isoformat(),
                fetched_at=datetime.now(UTC),
                where=where,
                finished=PartitionReport(len(served), api_total) if last else None,
            )
            buffer = []
            if page.next is not None:
                client.store.set(key, page.next.to_json())
    client.store.delete(key)
    return result

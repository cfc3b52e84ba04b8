"""The DuckDB warehouse: bulk upserts on the id column, one writer at a time.

Every write is one short transaction on a connection that is opened for it
and closed after, so a reader or a crashed writer never holds the file long.

An upsert deletes the batch's ids and inserts the batch, in one transaction.
Tables carry no PRIMARY KEY: DuckDB keeps a key's ART index in memory (every
write would load all ids of the table: ~50 MB at 500k string ids, growing
with the table), and one writer at a time plus a batch deduplicated first
already keep one row per id, which the `unique_ids` check verifies.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rl_pipeline.errors import WarehouseBusy, WarehouseError

PARTITION_COLUMN = "_partition"  # a DATE: the UTC day the record was fetched for
TIMESTAMPTZ = "TIMESTAMP WITH TIME ZONE"  # as DuckDB names the type in information_schema
# Field names that say a number is a point in time; and the instants (epoch seconds) it must fall in.
EPOCH_NAME = re.compile(r"(?i)(^|_)(created|updated|modified|deleted|timestamp|time|ts)$|_at$")
EPOCH_RANGE = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01 UTC
_EPOCH_KINDS = {"BIGINT", "INTEGER", "DOUBLE", "UBIGINT", "UINTEGER"}
# 2024-01-04T00:00:07Z, 2024-01-04 00:00:07.104+01:00: a date-time that says where it is. One without an
# offset stays text: which zone it means is the API's to say, not a guess.
ISO_TIMESTAMP = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)"
FETCHED_AT_COLUMN = "_fetched_at"
BOOKKEEPING = (PARTITION_COLUMN, FETCHED_AT_COLUMN)
# One row per table and partition: what the API served (unique ids) and, where it says so, its own total.
# It lives in a schema of its own, out of the way of the user's `SHOW TABLES`.
PARTITIONS_TABLE = "_rl.partitions"
LEGACY_PARTITIONS_TABLE = "main._rl_partitions"  # where earlier versions kept it; moved on the next write
_PARTITIONS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS _rl; "
    f"CREATE TABLE IF NOT EXISTS {PARTITIONS_TABLE} (table_name VARCHAR, partition VARCHAR, "
    "served BIGINT, api_total BIGINT, fetched_at TIMESTAMPTZ, PRIMARY KEY (table_name, partition))"
)
_KNOWN_TABLES = "SELECT table_schema || '.' || table_name FROM information_schema.tables"
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _process_lock(path: Path) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


DEFAULT_MEMORY_LIMIT = "32MB"  # a writer's DuckDB memory; see docs/benchmarks.md (one huge day)
DEFAULT_THREADS = 1  # each DuckDB thread keeps buffers of its own
_INTEGER = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
_NUMERIC = _INTEGER | {"FLOAT", "DOUBLE"}
EXACT_IN_DOUBLE = 2**53  # integers up to this size survive a DOUBLE; larger ones are rounded


@dataclass(frozen=True)
class Written:
    """What one upsert did: rows written, how many of their ids the table did not hold before, and (when
    asked to track changes) how many it held with other values."""

    rows: int = 0
    new: int = 0
    changed: int = 0
    table: TableShape | None = None  # the table once a partition is finished


@dataclass(frozen=True)
class TableShape:
    """A table as a partition's last write left it: its rows, its columns (name -> DuckDB type) and the
    partition's rows."""

    rows: int
    columns: dict[str, str]
    partition_rows: int


@dataclass(frozen=True)
class PartitionReport:
    """What the API served for a whole partition: unique ids, and its own total where it reports one."""

    served: int
    api_total: int | None


def quote(identifier: str) -> str:
    """`identifier` as a double-quoted SQL identifier, whatever characters it holds.

    Table names were validated when the sources file was loaded; field names
    come from the API and are taken as they are, quoted, never interpreted.
    """
    if not identifier or "\x00" in identifier:
        raise WarehouseError(f"{identifier!r} cannot be a column or table name")
    return '"' + identifier.replace('"', '""') + '"'


JSON_TEXT = {b"rl_pipeline": b"json"}  # field metadata: nested values that went as JSON text


def to_arrow(records: Sequence[Any], id_field: str, where: str) -> pa.Table:
    """`records` as one Arrow table: nested values as structs and lists (DuckDB turns them into JSON).

    Every record must be an object with a non-null `id_field`; the error names
    `where` and the record. When Arrow cannot infer one type for a field
    across the records (a nested shape that varies, a field that changes
    type), that field goes as text: nested values as JSON (the field is marked
    with `JSON_TEXT`), scalars as their string form. Nothing is dropped.
    """
    for index, record in enumerate(records):
        if not isinstance(record, dict) or record.get(id_field) is None:
            raise WarehouseError(f"{where}: record {index} has no {id_field!r}: {str(record)[:200]}")
    try:
        return _table(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    mixed, nested = _fields_as_text(records)

    def as_text(name: str, value: Any) -> Any:
        if value is None or (name not in mixed and name not in nested):
            return value
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)

    try:
        table = _table([{name: as_text(name, value) for name, value in r.items()} for r in records])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise WarehouseError(f"{where}: the records cannot be made a table: {exc}") from None
    return pa.table(
        table.columns,
        schema=pa.schema(f.with_metadata(JSON_TEXT) if f.name in nested else f for f in table.schema),
    )


def _fields_as_text(records: Sequence[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(fields whose values must go as text to keep them whole, fields holding nested values)."""
    kinds: dict[str, set[type]] = {}
    beyond_double: set[str] = set()  # integers a DOUBLE would round
    for record in records:
        for name, value in record.items():
            if value is not None:
                kinds.setdefault(name, set()).add(bool if isinstance(value, bool) else type(value))
            if type(value) is int and abs(value) > EXACT_IN_DOUBLE:
                beyond_double.add(name)
    # Text keeps every digit: integers beyond 64 bits, and integers next to floats that a DOUBLE would round.
    mixed = {name for name, seen in kinds.items() if len(seen) > 1 and not seen <= {int, float}}
    mixed |= {name for name in beyond_double if float in kinds[name] or _beyond_int64(records, name)}
    return mixed, {name for name, seen in kinds.items() if seen & {dict, list}}


def _table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """Records as a table with a column for every field of any record (`Table.from_pylist` takes only
    the first record's fields and would drop a field that first appears further down the page)."""
    return pa.Table.from_struct_array(pa.array(records)) if records else pa.table({})


def _beyond_int64(records: Sequence[dict[str, Any]], name: str) -> bool:
    return any(type(r.get(name)) is int and not -(2**63) <= r[name] < 2**63 for r in records)


def checked_field_names(batch: pa.Table, where: str) -> pa.Table:
    """`batch` with fields whose names differ only in case (a page said `name`, a later one `Name`) made
    one, as DuckDB's case-insensitive columns will hold them. Refused, naming the field: an empty name, a
    bookkeeping column's, and two such fields set in one record (one would overwrite the other)."""
    first: dict[str, str] = {}
    for name in batch.column_names:
        if not name or name in BOOKKEEPING:
            raise WarehouseError(
                f"{where}: the API sends a field named {name!r}, which this warehouse cannot keep "
                f"({'an empty name' if not name else 'the name of a column the pipeline writes itself'})"
            )
        kept = first.setdefault(name.lower(), name)
        if kept == name:
            continue
        a, b = batch.column(kept), batch.column(name)
        if a.type != b.type or pc.any(pc.and_(pc.is_valid(a), pc.is_valid(b))).as_py():
            raise WarehouseError(
                f"{where}: the API sends fields {kept!r} and {name!r}"
                + (" in one record" if a.type == b.type else " of different types")
                + "; DuckDB column names ignore case, so one would overwrite the other"
            )
        merged = pc.coalesce(a, b)
        batch = batch.set_column(batch.column_names.index(kept), batch.field(kept), merged).drop_columns([name])
    return batch


def latest_per_id(batch: pa.Table, id_field: str) -> pa.Table:
    """One row per id, the last one winning (ON CONFLICT would keep an arbitrary one)."""
    ids = batch.column(id_field)
    if pc.count_distinct(ids).as_py() == batch.num_rows:
        return batch
    order = pa.table({"id": ids, "row": pa.array(range(batch.num_rows), pa.int64())})
    return batch.take(order.group_by("id", use_threads=False).aggregate([("row", "max")]).column("row_max"))


def _widened(conn: duckdb.DuckDBPyConnection, table: str, column: str, current: str, kind: str, batch: str) -> str:
    """The type that keeps both the column's values and the batch's: DOUBLE for numbers while every
    integer among them fits a DOUBLE exactly, else VARCHAR (text keeps every digit)."""
    if not {current, kind} <= _NUMERIC:
        return "VARCHAR"
    sides = [(f"{column}", f"{quote(table)}")] if current in _INTEGER else []
    sides += [(batch, "batch")] if kind in _INTEGER else []
    for value, source in sides:
        low, high = conn.execute(f"SELECT min({value}), max({value}) FROM {source}").fetchone()  # type: ignore[misc]
        if low is not None and (low < -EXACT_IN_DOUBLE or high > EXACT_IN_DOUBLE):
            return "VARCHAR"
    return "DOUBLE"


def incoming_columns(conn: duckdb.DuckDBPyConnection, batch: pa.Table) -> dict[str, tuple[str, str]]:
    """The batch's fields as the table gets them: name -> (DuckDB type, expression over the view `batch`,
    registered here). Nested values go as JSON; text that is an ISO-8601 date-time with a UTC offset (or
    Z) in every record of the batch that has it goes as TIMESTAMPTZ."""
    conn.register("batch", batch)
    nested_as_text = {field.name for field in batch.schema if field.metadata == JSON_TEXT}
    incoming: dict[str, tuple[str, str]] = {}
    for name, kind, *_ in conn.execute("DESCRIBE SELECT * FROM batch").fetchall():
        structured = kind.startswith(("STRUCT", "MAP")) or kind.endswith("[]")
        expression = f"to_json({quote(name)})" if structured else quote(name)
        incoming[name] = ("JSON" if structured or name in nested_as_text else kind, expression)
    text = [name for name, (kind, _) in incoming.items() if kind == "VARCHAR"]
    if text:
        tests = ", ".join(f"count({quote(n)}) > 0 AND bool_and(regexp_full_match({quote(n)}, $1))" for n in text)
        stamped = conn.execute(f"SELECT {tests} FROM batch", [ISO_TIMESTAMP]).fetchone()
        for name, is_timestamp in zip(text, stamped or (), strict=True):
            if is_timestamp:
                incoming[name] = (TIMESTAMPTZ, f"CAST({quote(name)} AS TIMESTAMPTZ)")
    incoming |= epoch_columns(conn, incoming)
    return incoming


def epoch_columns(conn: duckdb.DuckDBPyConnection, incoming: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Numbers that are confidently epoch times, as TIMESTAMPTZ: the field is named like a time
    (`created`, `updated_at`, `event_time`, `ts`…) and every value of the batch is an instant of
    2000-2099 in seconds, or every one in milliseconds."""
    named = [name for name, (kind, _) in incoming.items() if kind in _EPOCH_KINDS and EPOCH_NAME.search(name)]
    if not named:
        return {}
    low, high = EPOCH_RANGE
    tests = ", ".join(
        f"count({q}) > 0 AND bool_and({q} >= {low} AND {q} < {high}), "
        f"count({q}) > 0 AND bool_and({q} >= {low * 1000} AND {q} < {high * 1000})"
        for q in map(quote, named)
    )
    verdicts = conn.execute(f"SELECT {tests} FROM batch").fetchone() or ()
    out = {}
    for index, name in enumerate(named):
        seconds, milliseconds = verdicts[2 * index], verdicts[2 * index + 1]
        if seconds or milliseconds:
            out[name] = (TIMESTAMPTZ, f"to_timestamp({quote(name)}{'' if seconds else ' / 1000'})")
    return out


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Warehouse:
    """A DuckDB file that endpoint tables are upserted into.

    Promise: after `upsert`, the table holds exactly one row per id, the
    latest written; a replayed batch changes nothing but `_fetched_at`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        lock_patience: float = 120.0,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self.path = Path(path)
        self.lock_patience = lock_patience
        # A writer's own DuckDB budget: every run process writes, so each must stay small; beyond it DuckDB spills.
        self._write_config = {"memory_limit": memory_limit, "threads": str(threads)}

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (bounded, jittered) while another process holds the file.

        One connection at a time: across processes DuckDB's file lock sees to it, within a process a
        lock does (DuckDB does not take connections to one file opened and closed concurrently).
        """
        with _process_lock(self.path), self._open(read_only) as conn:
            yield conn

    @contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_patience
        delay = 0.05
        while True:
            try:
                config = {} if read_only else self._write_config
                conn = duckdb.connect(str(self.path), read_only=read_only, config=config)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() + delay > deadline:
                    raise WarehouseBusy(
                        f"warehouse {self.path}: still locked by another process after {self.lock_patience:g}s"
                    ) from None
                time.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 2.0)
        try:
            yield conn
        finally:
            conn.close()

    def qualified(self, table: str) -> str:
        """`warehouse.main.events`: the table as DuckDB names it when the file is attached by its name."""
        return f"{self.path.stem}.main.{table}"

    def upsert(
        self,
        table: str,
        batch: pa.Table | Sequence[dict[str, Any]],
        *,
        id_field: str = "id",
        partition: str,
        fetched_at: datetime,
        where: str = "",
        finished: PartitionReport | None = None,
        track_changes: bool = False,
    ) -> Written:
        """Insert or replace the rows of `batch` (Arrow, or records as `to_arrow` takes them) by `id_field`;
        return the rows written (one per id, the last winning), how many were new and, with `track_changes`,
        how many replaced a row with other values (a join over the replaced rows).

        New fields become new columns (older rows keep NULL). A field whose type changes is widened rather
        than losing a value: integers to DOUBLE while each fits one exactly, anything else to VARCHAR. Field
        names the table cannot keep (empty, a bookkeeping column's, two differing only in case) fail the
        batch, naming the field. With `finished`, the partition is complete and what the API served for it
        is noted in the same transaction, for the row-count check.
        """
        where = where or f"table {table}, partition {partition}"
        if not isinstance(batch, pa.Table):
            batch = to_arrow(batch, id_field, where)
        batch = checked_field_names(batch, where)
        if not batch.num_rows and finished is None:
            return Written()
        batch, written = latest_per_id(batch, id_field) if batch.num_rows else batch, Written()
        with self.transaction(where) as conn:
            if batch.num_rows:
                written = self._upsert_rows(conn, table, batch, id_field, partition, fetched_at, track_changes)
            if finished is not None:
                self._partitions_table(conn)
                conn.execute(
                    f"INSERT OR REPLACE INTO {PARTITIONS_TABLE} VALUES (?, ?, ?, ?, ?)",
                    [table, partition, finished.served, finished.api_total, fetched_at],
                )
                written = replace(written, table=self._shape(conn, table, partition))
        return written

    @staticmethod
    def _partitions_table(conn: duckdb.DuckDBPyConnection) -> None:
        """Create the partitions table, moving the rows of one an earlier version kept in `main`."""
        conn.execute(_PARTITIONS_DDL)
        legacy = "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = '_rl_partitions'"
        if conn.execute(legacy).fetchone():
            conn.execute(f"INSERT OR REPLACE INTO {PARTITIONS_TABLE} SELECT * FROM {LEGACY_PARTITIONS_TABLE}")
            conn.execute(f"DROP TABLE {LEGACY_PARTITIONS_TABLE}")

    @staticmethod
    def _shape(conn: duckdb.DuckDBPyConnection, table: str, partition: str) -> TableShape | None:
        columns = Warehouse._columns(conn, table)
        if not columns:
            return None  # a day with no records, before any day had one
        # Two counts, not one with a FILTER: the partition's can skip the row groups of other days.
        rows, partition_rows = conn.execute(
            f"SELECT (SELECT count(*) FROM {quote(table)}), "
            f"(SELECT count(*) FROM {quote(table)} WHERE {PARTITION_COLUMN} = ?)",
            [partition],
        ).fetchone()  # type: ignore[misc]
        return TableShape(rows, columns, partition_rows)

    @contextmanager
    def transaction(self, where: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on the file: committed whole, or rolled back and raised as a WarehouseError
        naming `where` (with what to change when DuckDB ran out of memory)."""
        with self.connect() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except duckdb.Error as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, duckdb.OutOfMemoryException):
                    limit = self._write_config["memory_limit"]
                    raise WarehouseError(
                        f"{where}: DuckDB ran out of the writer's memory_limit ({limit}); raise the warehouse "
                        f"resource's memory_limit or lower batch_rows. {str(exc).splitlines()[0]}"
                    ) from exc
                raise WarehouseError(f"{where}: {exc}") from exc

    def _upsert_rows(
        self,
        conn: duckdb.DuckDBPyConnection,
        table: str,
        batch: pa.Table,
        id_field: str,
        partition: str,
        fetched_at: datetime,
        track_changes: bool,
    ) -> Written:
        incoming = incoming_columns(conn, batch)
        incoming[PARTITION_COLUMN] = ("DATE", f"DATE {_sql_literal(partition)}")
        incoming[FETCHED_AT_COLUMN] = (TIMESTAMPTZ, f"TIMESTAMPTZ {_sql_literal(fetched_at.isoformat())}")
        existing = self._columns(conn, table)
        if not existing:
            self._create(conn, table, incoming)
            existing = self._columns(conn, table)
        selected = self._evolve(conn, table, existing, incoming)
        # The ids as the table holds them (a column widened to text holds them as text).
        ids = selected[id_field].rsplit(" AS ", 1)[0]
        # Each of these reads the table's ids (it keeps no index to update on every write). The range of the
        # batch's ids, implied by the semi-join, lets DuckDB skip the row groups outside it: with ids that grow
        # over time, those of all days before. A first load of a day pays one lookup that finds none held.
        span = conn.execute(f"SELECT min({ids}), max({ids}) FROM batch").fetchone()
        among = f"{quote(id_field)} BETWEEN ? AND ? AND {quote(id_field)} IN (SELECT {ids} FROM batch)"
        held = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(table)} WHERE {among})", span).fetchone()
        refetched = bool(held and held[0])
        changed = self._changed(conn, table, selected, id_field, span) if refetched and track_changes else 0
        query = f"DELETE FROM {quote(table)} WHERE {among}"
        replaced = conn.execute(query, span).fetchone()[0] if refetched else 0  # type: ignore[index]
        conn.execute(f"INSERT INTO {quote(table)} BY NAME SELECT {', '.join(selected.values())} FROM batch")
        return Written(batch.num_rows, batch.num_rows - replaced, changed)

    @staticmethod
    def _changed(
        conn: duckdb.DuckDBPyConnection, table: str, selected: dict[str, str], id_field: str, span: Any
    ) -> int:
        """Rows of the batch whose id the table holds with other values (in the batch's fields); `span`, the
        batch's least and greatest id, bounds the table's side as it does the lookup's."""
        own = {name: expression for name, expression in selected.items() if name not in BOOKKEEPING}
        columns = [expression.rsplit(" AS ", 1)[1] for expression in own.values()]
        same = " AND ".join(f"b.{column} IS NOT DISTINCT FROM t.{column}" for column in columns)
        key = own[id_field].rsplit(" AS ", 1)[1]
        return conn.execute(
            f"SELECT count(*) FROM (SELECT {', '.join(own.values())} FROM batch) b "
            f"JOIN {quote(table)} t ON b.{key} = t.{key} WHERE t.{key} BETWEEN ? AND ? AND NOT ({same})",
            span,
        ).fetchone()[0]  # type: ignore[index]

    @staticmethod
    def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        return dict(
            conn.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "  # information_schema costs 2-3x more
                "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
                [table],
            ).fetchall()
        )

    @staticmethod
    def _create(conn: duckdb.DuckDBPyConnection, table: str, incoming: dict[str, tuple[str, str]]) -> None:
        columns = [f"{quote(name)} {kind}" for name, (kind, _) in incoming.items() if kind != '"NULL"']
        conn.execute(f"CREATE TABLE {quote(table)} ({', '.join(columns)})")

    @staticmethod
    def _evolve(
        conn: duckdb.DuckDBPyConnection, table: str, existing: dict[str, str], incoming: dict[str, tuple[str, str]]
    ) -> dict[str, str]:
        """Add new columns, widen changed ones; return the SELECT list for the batch, by incoming name.

        A field meets its column whatever the case of its name (DuckDB's names ignore case)."""
        by_lower = {name.lower(): name for name in existing}
        selected = {}
        for name, (kind, expression) in incoming.items():
            column_name = by_lower.get(name.lower(), name)
            column = quote(column_name)
            current = existing.get(column_name)
            if kind == '"NULL"':
                if current is not None:
                    selected[name] = f"NULL AS {column}"
                continue
            if current is None:
                conn.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {column} {kind}")
                current = kind
            elif name == PARTITION_COLUMN and current == "VARCHAR":  # a table from before `_partition` was a DATE
                conn.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {column} TYPE DATE")
                current = kind
            elif kind == TIMESTAMPTZ and current != TIMESTAMPTZ:
                # A column of text or numbers keeps the API's value as it came, not DuckDB's reading of it.
                expression, kind = f"CAST({quote(name)} AS {current})", current
            elif current != kind and current != "VARCHAR":
                current = _widened(conn, table, column, current, kind, expression)
                if current != existing[column_name]:
                    conn.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {column} TYPE {current}")
            selected[name] = (
                f"CAST({expression} AS {current}) AS {column}" if current != kind else f"{expression} AS {column}"
            )
        return selected

    def partition_mismatches(self, table: str) -> tuple[int, list[tuple[str, int, int]]]:
        """(partitions checked, [(partition, expected rows, rows in the table)] that differ).

        Expected is the API's own total where it reports one, else the unique ids it served.
        """
        with self.connect(read_only=True) as conn:
            known = {name for (name,) in conn.execute(_KNOWN_TABLES).fetchall()}
            partitions = next((t for t in (PARTITIONS_TABLE, LEGACY_PARTITIONS_TABLE) if t in known), None)
            if partitions is None:
                return 0, []
            reported = conn.execute(
                f"SELECT partition, coalesce(api_total, served) FROM {partitions} WHERE table_name = ? ORDER BY 1",
                [table],
            ).fetchall()
            counts = (
                dict(
                    conn.execute(
                        f"SELECT CAST({PARTITION_COLUMN} AS VARCHAR), count(*) FROM {quote(table)} GROUP BY 1"
                    ).fetchall()
                )
                if f"main.{table}" in known
                else {}
            )
        mismatches = [(p, expected, counts.get(p, 0)) for p, expected in reported if counts.get(p, 0) != expected]
        return len(reported), mismatches

    def duplicate_ids(self, table: str, id_field: str) -> tuple[int, int]:
        """(rows, rows beyond one per id) of `table`; (0, 0) before it exists."""
        with self.connect(read_only=True) as conn:
            exists = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()[0]  # type: ignore[index]
            if not exists:
                return 0, 0
            rows, distinct = conn.execute(
                f"SELECT count(*), count(DISTINCT {quote(id_field)}) FROM {quote(table)}"
            ).fetchone()  # type: ignore[misc]
        return rows, rows - distinct

    def partition_ids(self, table: str, id_field: str, partition: str) -> list[Any]:
        """The ids of `table`'s rows of `partition` ([] before the file or the table exists)."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as conn:
            exists = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()[0]  # type: ignore[index]
            if not exists:
                return []
            query = f"SELECT {quote(id_field)} FROM {quote(table)} WHERE {PARTITION_COLUMN} = ?"
            return [row[0] for row in conn.execute(query, [partition]).fetchall()]

    def count(self, table: str) -> int:
        with self.connect(read_only=True) as conn:
            return conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]  # type: ignore[index]

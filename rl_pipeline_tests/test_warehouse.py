"""The DuckDB writer on a real file: one row per id, the latest; nothing dropped when types disagree."""

from __future__ import annotations

import json
from array import array
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rl_pipeline.ingest import distinct
from rl_pipeline.warehouse import JSON_TEXT, Warehouse, WarehouseError, latest_per_id, to_arrow

NOW = datetime(2024, 1, 2, tzinfo=UTC)


def rows(warehouse: Warehouse, table: str = "t") -> list[tuple]:
    with warehouse.connect(read_only=True) as conn:
        return conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall()


def test_ids_repeated_in_a_batch_keep_the_last_record(warehouse: Warehouse) -> None:
    batch = [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "c"}, {"id": 2, "v": "d"}, {"id": 3, "v": "e"}]
    assert warehouse.upsert("t", batch, partition="p", fetched_at=NOW) == 3
    assert rows(warehouse) == [(1, "c"), (2, "d"), (3, "e")]


def test_a_replayed_batch_replaces_rows_and_adds_none(warehouse: Warehouse) -> None:
    warehouse.upsert("t", [{"id": i, "v": f"old{i}"} for i in range(5)], partition="p", fetched_at=NOW)
    warehouse.upsert("t", [{"id": i, "v": f"new{i}"} for i in range(3, 8)], partition="p", fetched_at=NOW)
    warehouse.upsert("t", [{"id": i, "v": f"new{i}"} for i in range(3, 8)], partition="p", fetched_at=NOW)
    assert rows(warehouse) == [(0, "old0"), (1, "old1"), (2, "old2")] + [(i, f"new{i}") for i in range(3, 8)]
    assert warehouse.duplicate_ids("t", "id") == (8, 0)


@given(st.lists(st.tuples(st.integers(0, 20), st.text(max_size=3)), max_size=60))
def test_latest_per_id_is_a_dict_keyed_by_id(pairs: list[tuple[int, str]]) -> None:
    batch = pa.table({"id": pa.array([p[0] for p in pairs], pa.int64()), "v": pa.array([p[1] for p in pairs])})
    kept = latest_per_id(batch, "id").to_pylist()
    assert {r["id"]: r["v"] for r in kept} == dict(pairs) and len(kept) == len(dict(pairs))


def test_a_field_that_changes_type_within_a_batch_goes_as_text(warehouse: Warehouse) -> None:
    batch = to_arrow([{"id": 1, "v": 12}, {"id": 2, "v": "12 units"}, {"id": 3, "v": 1.5}], "id", "page 1")
    assert batch.column("v").to_pylist() == ["12", "12 units", "1.5"]


def test_a_record_without_id_is_named_and_nothing_of_its_batch_is_written(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match=r"page 3: record 1 has no 'id'"):
        warehouse.upsert("t", [{"id": 1, "v": "a"}, {"v": "b"}], partition="p", fetched_at=NOW, where="page 3")
    with pytest.raises(WarehouseError, match=r"record 0 has no 'id'"):
        to_arrow(["not an object"], "id", "page 4")


def test_nested_values_of_varying_shape_go_as_json_text(warehouse: Warehouse) -> None:
    batch = to_arrow([{"id": 1, "v": {"a": 1}}, {"id": 2, "v": [1, 2]}, {"id": 3, "v": None}], "id", "page 1")
    assert batch.schema.field("v").metadata == JSON_TEXT
    warehouse.upsert("t", batch, partition="p", fetched_at=NOW)
    with warehouse.connect(read_only=True) as conn:
        kind = conn.execute("SELECT data_type FROM information_schema.columns WHERE column_name = 'v'").fetchone()
        values = [
            None if v is None else json.loads(v) for (v,) in conn.execute("SELECT v FROM t ORDER BY id").fetchall()
        ]
    assert kind == ("JSON",) and values == [{"a": 1}, [1, 2], None]


def test_the_writer_connection_keeps_to_its_memory_budget(tmp_path) -> None:
    warehouse = Warehouse(tmp_path / "w.duckdb", memory_limit="20MB", threads=1)
    with warehouse.connect() as conn:
        assert conn.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone() == (
            "19.0 MiB",
            1,
        )


@given(st.lists(st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=8)), max_size=200))
def test_distinct_counts_distinct_ids(ids: list) -> None:
    assert distinct(array("q", (hash(str(i)) for i in ids))) == len({str(i) for i in ids})


def test_a_batch_beyond_the_writers_memory_limit_says_which_setting_to_raise(tmp_path) -> None:
    warehouse = Warehouse(tmp_path / "w.duckdb", memory_limit="1MB")
    batch = [{"id": i, "text": "x" * 200} for i in range(100_000)]
    with pytest.raises(WarehouseError, match=r"page 7: DuckDB ran out of the writer's memory_limit \(1MB\)"):
        warehouse.upsert("t", batch, partition="p", fetched_at=NOW, where="page 7")
    assert warehouse.duplicate_ids("t", "id") == (0, 0)  # nothing of it written: not even the table

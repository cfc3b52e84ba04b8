"""The DuckDB writer on a real file: one row per id, the latest; nothing dropped when types disagree."""

from __future__ import annotations

import json
from array import array
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rl_pipeline.errors import WarehouseError
from rl_pipeline.ingest import distinct
from rl_pipeline.warehouse import (
    JSON_TEXT,
    TIMESTAMPTZ,
    PartitionReport,
    TableShape,
    Warehouse,
    Written,
    latest_per_id,
    to_arrow,
)

NOW = datetime(2024, 1, 2, tzinfo=UTC)


def rows(warehouse: Warehouse, table: str = "t") -> list[tuple]:
    with warehouse.connect(read_only=True) as conn:
        return conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall()


def test_ids_repeated_in_a_batch_keep_the_last_record(warehouse: Warehouse) -> None:
    batch = [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "c"}, {"id": 2, "v": "d"}, {"id": 3, "v": "e"}]
    assert warehouse.upsert("t", batch, partition="2024-01-02", fetched_at=NOW).rows == 3
    assert rows(warehouse) == [(1, "c"), (2, "d"), (3, "e")]


def test_a_replayed_batch_replaces_rows_and_adds_none(warehouse: Warehouse) -> None:
    warehouse.upsert("t", [{"id": i, "v": f"old{i}"} for i in range(5)], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("t", [{"id": i, "v": f"new{i}"} for i in range(3, 8)], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("t", [{"id": i, "v": f"new{i}"} for i in range(3, 8)], partition="2024-01-02", fetched_at=NOW)
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
        warehouse.upsert("t", [{"id": 1, "v": "a"}, {"v": "b"}], partition="2024-01-02", fetched_at=NOW, where="page 3")
    with pytest.raises(WarehouseError, match=r"record 0 has no 'id'"):
        to_arrow(["not an object"], "id", "page 4")


def test_nested_values_of_varying_shape_go_as_json_text(warehouse: Warehouse) -> None:
    batch = to_arrow([{"id": 1, "v": {"a": 1}}, {"id": 2, "v": [1, 2]}, {"id": 3, "v": None}], "id", "page 1")
    assert batch.schema.field("v").metadata == JSON_TEXT
    warehouse.upsert("t", batch, partition="2024-01-02", fetched_at=NOW)
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
        warehouse.upsert("t", batch, partition="2024-01-02", fetched_at=NOW, where="page 7")
    assert warehouse.duplicate_ids("t", "id") == (0, 0)  # nothing of it written: not even the table


def column_type(warehouse: Warehouse, column: str, table: str = "t") -> str:
    with warehouse.connect(read_only=True) as conn:
        return conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
            [table, column],
        ).fetchone()[0]


def test_d13_an_integer_beyond_a_double_is_never_rounded_when_the_column_widens(warehouse: Warehouse) -> None:
    big = 2**53 + 1  # 9007199254740993: a DOUBLE stores ...992
    warehouse.upsert("t", [{"id": 1, "v": big}], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("t", [{"id": 2, "v": 1.5}], partition="2024-01-02", fetched_at=NOW)
    assert rows(warehouse) == [(1, str(big)), (2, "1.5")] and column_type(warehouse, "v") == "VARCHAR"
    # Small integers meeting floats still make a number column.
    warehouse.upsert("u", [{"id": 1, "v": 3}], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("u", [{"id": 2, "v": 1.5}], partition="2024-01-02", fetched_at=NOW)
    assert rows(warehouse, "u") == [(1, 3.0), (2, 1.5)] and column_type(warehouse, "v", "u") == "DOUBLE"
    # A DOUBLE column meeting a big integer.
    warehouse.upsert("w", [{"id": 1, "v": 0.5}], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("w", [{"id": 2, "v": big}], partition="2024-01-02", fetched_at=NOW)
    assert rows(warehouse, "w") == [(1, "0.5"), (2, str(big))]


def test_d12_d13_huge_integers_in_one_page_are_kept_as_text_or_named(warehouse: Warehouse) -> None:
    records = [{"id": 1, "v": 2**64}, {"id": 2, "v": 7}]  # beyond 64 bits
    warehouse.upsert("t", records, partition="2024-01-02", fetched_at=NOW, where="page 2")
    assert rows(warehouse) == [(1, str(2**64)), (2, "7")]
    mixed = [{"id": 1, "v": 2**53 + 1}, {"id": 2, "v": 0.25}]  # Arrow refuses to round the integer
    assert to_arrow(mixed, "id", "page 3").column("v").to_pylist() == [str(2**53 + 1), "0.25"]


def test_d10_ids_of_another_type_in_a_later_batch_still_replace_their_rows(warehouse: Warehouse) -> None:
    warehouse.upsert("t", [{"id": "a", "v": "x"}, {"id": "1", "v": "old"}], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("t", [{"id": 1, "v": "new"}], partition="2024-01-02", fetched_at=NOW)  # ints meet a text column
    assert rows(warehouse) == [("1", "new"), ("a", "x")]
    warehouse.upsert("u", [{"id": 1, "v": "old"}], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("u", [{"id": "b", "v": "x"}, {"id": "1", "v": "new"}], partition="2024-01-02", fetched_at=NOW)
    assert rows(warehouse, "u") == [("1", "new"), ("b", "x")]


def test_a_field_first_seen_further_down_a_page_is_kept(warehouse: Warehouse) -> None:
    warehouse.upsert("t", [{"id": 1}, {"id": 2, "v": "late"}], partition="2024-01-02", fetched_at=NOW)
    assert rows(warehouse) == [(1, None), (2, "late")]


def test_d11_a_field_whose_case_changes_lands_in_its_column(warehouse: Warehouse) -> None:
    warehouse.upsert("t", [{"id": 1, "name": "a"}], partition="2024-01-02", fetched_at=NOW)
    warehouse.upsert("t", [{"id": 2, "Name": "b"}], partition="2024-01-02", fetched_at=NOW)  # a later batch
    batch = [{"id": 3, "name": "c"}, {"id": 4, "NAME": "d"}]  # within one batch
    warehouse.upsert("t", batch, partition="2024-01-02", fetched_at=NOW)
    with warehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT id, name FROM t ORDER BY id").fetchall() == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]


@pytest.mark.parametrize(
    ("record", "named"),
    [
        ({"id": 1, "_partition": "the API's own"}, "'_partition'"),
        ({"id": 1, "_fetched_at": "2020-01-01"}, "'_fetched_at'"),
        ({"id": 1, "": "no name"}, "''"),
        ({"id": 1, "name": "a", "Name": "b"}, "'name' and 'Name' in one record"),
    ],
)
def test_d20_a_field_the_table_cannot_keep_fails_naming_it_and_writes_nothing(
    warehouse: Warehouse, record: dict, named: str
) -> None:
    warehouse.upsert("t", [{"id": 0, "v": "kept"}], partition="2024-01-02", fetched_at=NOW)
    with pytest.raises(WarehouseError, match=f"page 5: the API sends (a )?field.* {named}"):
        warehouse.upsert("t", [record], partition="2024-01-02", fetched_at=NOW, where="page 5")
    assert warehouse.count("t") == 1


def test_an_upsert_says_how_many_rows_were_new_and_how_many_changed(warehouse: Warehouse) -> None:
    first = [{"id": i, "v": f"v{i}", "n": {"k": i}} for i in range(5)]
    assert warehouse.upsert("t", first, partition="2024-01-02", fetched_at=NOW, track_changes=True) == Written(5, 5, 0)
    again = [*first[:3], {"id": 3, "v": "late edit", "n": {"k": 3}}, {"id": 5, "v": "v5", "n": {"k": 5}}]
    assert warehouse.upsert("t", again, partition="2024-01-02", fetched_at=NOW, track_changes=True) == Written(5, 1, 1)
    assert warehouse.upsert("t", again, partition="2024-01-02", fetched_at=NOW) == Written(5, 0, 0)  # not tracked


def test_the_bookkeeping_table_stays_out_of_the_users_tables_and_an_old_one_moves(warehouse: Warehouse) -> None:
    with warehouse.connect() as conn:  # a warehouse written by an earlier version: its table in `main`
        conn.execute(
            "CREATE TABLE _rl_partitions (table_name VARCHAR, partition VARCHAR, served BIGINT, api_total BIGINT, "
            "fetched_at TIMESTAMPTZ, PRIMARY KEY (table_name, partition))"
        )
        conn.execute("INSERT INTO _rl_partitions VALUES ('events', '2024-01-01', 2, NULL, now())")
    assert warehouse.partition_mismatches("events") == (1, [("2024-01-01", 2, 0)])  # read where it is

    written = warehouse.upsert(
        "events", [{"id": 1}, {"id": 2}], partition="2024-01-02", fetched_at=NOW, finished=PartitionReport(2, None)
    )
    columns = {"id": "BIGINT", "_partition": "DATE", "_fetched_at": "TIMESTAMP WITH TIME ZONE"}
    assert written.table == TableShape(rows=2, columns=columns, partition_rows=2)
    with warehouse.connect(read_only=True) as conn:
        assert [name for (name,) in conn.execute("SHOW TABLES").fetchall()] == ["events"]
    # The old rows moved with it: 2024-01-01 still reported (its 2 ids are not in the table), 2024-01-02 matches.
    assert warehouse.partition_mismatches("events") == (2, [("2024-01-01", 2, 0)])


def describe(warehouse: Warehouse, table: str) -> dict[str, str]:
    with warehouse.connect(read_only=True) as conn:
        return {name: kind for name, kind, *_ in conn.execute(f"DESCRIBE {table}").fetchall()}


def test_date_times_with_an_offset_become_timestamptz_and_the_partition_a_date(warehouse: Warehouse) -> None:
    batch = [
        {"id": 1, "seen_at": "2024-01-04T00:00:00.104Z", "local": "2024-01-04T01:00:00", "day": "2024-01-04"},
        {"id": 2, "seen_at": "2024-01-04 09:30:00+01:00", "local": None, "day": "2024-01-04"},
    ]
    warehouse.upsert("t", batch, partition="2024-01-04", fetched_at=NOW)
    types = describe(warehouse, "t")
    assert types["seen_at"] == "TIMESTAMP WITH TIME ZONE" and types["_partition"] == "DATE"
    assert types["local"] == types["day"] == "VARCHAR"  # no offset: which zone is the API's to say
    with warehouse.connect(read_only=True) as conn:
        seen = conn.execute("SELECT seen_at FROM t ORDER BY id").fetchall()
    assert [a.isoformat() for (a,) in seen] == ["2024-01-04T00:00:00.104000+00:00", "2024-01-04T08:30:00+00:00"]

    # A later batch with text that is not a date-time: the column becomes text, no value lost.
    warehouse.upsert("t", [{"id": 3, "seen_at": "yesterday"}], partition="2024-01-05", fetched_at=NOW)
    assert describe(warehouse, "t")["seen_at"] == "VARCHAR"
    with warehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE seen_at IS NULL").fetchone() == (0,)


def test_epoch_numbers_named_like_times_become_timestamptz_and_nothing_else_does(warehouse: Warehouse) -> None:
    batch = [
        {"id": 1, "created": 1704326400, "updated_at": 1704326400123, "event_ts": 1704326400.5,
         "count": 1704326400, "deleted_at": 0, "reviewed_at": None},
        {"id": 2, "created": 1704330000, "updated_at": 1704330000000, "event_ts": 1704330000.25,
         "count": 7, "deleted_at": 1704330000, "reviewed_at": 1704330000},
    ]  # fmt: skip
    warehouse.upsert("t", batch, partition="2024-01-04", fetched_at=NOW)
    types = describe(warehouse, "t")
    assert types["created"] == types["updated_at"] == types["event_ts"] == types["reviewed_at"] == TIMESTAMPTZ
    assert types["count"] == "BIGINT"  # in range, but its name says nothing of time
    assert types["deleted_at"] == "BIGINT"  # 0 is no instant of this century: a flag, not a time
    with warehouse.connect(read_only=True) as conn:
        rows = conn.execute("SELECT created, updated_at, event_ts, reviewed_at FROM t ORDER BY id").fetchall()
    assert [[v.isoformat() if v else None for v in row] for row in rows] == [
        ["2024-01-04T00:00:00+00:00", "2024-01-04T00:00:00.123000+00:00", "2024-01-04T00:00:00.500000+00:00", None],
        ["2024-01-04T01:00:00+00:00", "2024-01-04T01:00:00+00:00", "2024-01-04T01:00:00.250000+00:00",
         "2024-01-04T01:00:00+00:00"],
    ]  # fmt: skip

    # A number column stays one when a later batch looks like epoch times: the API's values, as they came.
    warehouse.upsert("t", [{"id": 3, "deleted_at": 1704340000}], partition="2024-01-05", fetched_at=NOW)
    assert describe(warehouse, "t")["deleted_at"] == "BIGINT"
    with warehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT deleted_at FROM t WHERE id = 3").fetchone() == (1704340000,)


def test_a_table_from_before_keeps_its_text_columns_and_its_partition_becomes_a_date(warehouse: Warehouse) -> None:
    with warehouse.connect() as conn:
        conn.execute("CREATE TABLE t (id BIGINT, seen_at VARCHAR, _partition VARCHAR, _fetched_at TIMESTAMPTZ)")
        conn.execute("INSERT INTO t VALUES (1, '2024-01-03T10:00:00Z', '2024-01-03', now())")
    warehouse.upsert("t", [{"id": 2, "seen_at": "2024-01-04T10:00:00Z"}], partition="2024-01-04", fetched_at=NOW)
    assert describe(warehouse, "t") == {
        "id": "BIGINT", "seen_at": "VARCHAR", "_partition": "DATE", "_fetched_at": "TIMESTAMP WITH TIME ZONE"
    }  # fmt: skip
    with warehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT seen_at FROM t ORDER BY id").fetchall() == [
            ("2024-01-03T10:00:00Z",), ("2024-01-04T10:00:00Z",)  # the API's text, as it was
        ]  # fmt: skip

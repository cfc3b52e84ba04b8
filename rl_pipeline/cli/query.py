"""`rl-pipeline query`: read-only SQL on the warehouse, printed as a table."""

from __future__ import annotations

import argparse
import sys

import duckdb
from rich.console import Console
from rich.table import Table

from rl_pipeline.errors import WarehouseError
from rl_pipeline.warehouse import Warehouse


def cmd_query(args: argparse.Namespace) -> int:
    warehouse = Warehouse(args.warehouse, lock_patience=args.wait)
    if not warehouse.path.exists():
        print(f"rl-pipeline: no warehouse at {warehouse.path} yet; materialize an asset first", file=sys.stderr)
        return 2
    try:
        with warehouse.connect(read_only=True) as conn:
            cursor = conn.execute(args.sql)
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(args.limit)
    except (WarehouseError, duckdb.Error) as exc:
        print(f"rl-pipeline query: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    table = Table(*names)
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(table)
    return 0

"""Asset checks: one row per id, and as many rows per day as the API served.

They are declared on each asset (`check_specs`) and evaluated at the end of
every run that materializes it, over the whole table.
"""

from __future__ import annotations

import dagster as dg

from rl_pipeline.warehouse import Warehouse

UNIQUE_IDS, ROWS_MATCH_API = "unique_ids", "rows_match_api"


def check_specs(table: str, id_field: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(UNIQUE_IDS, asset=table, description=f"One row per {id_field}."),
        dg.AssetCheckSpec(
            ROWS_MATCH_API,
            asset=table,
            description="Per day, the table holds as many rows as the API reported (its total) or served.",
        ),
    ]


def check_results(warehouse: Warehouse, table: str, id_field: str) -> list[dg.AssetCheckResult]:
    rows, duplicates = warehouse.duplicate_ids(table, id_field)
    checked, mismatches = warehouse.partition_mismatches(table)
    lines = [f"| {p} | {expected} | {actual} |" for p, expected, actual in mismatches[:50]]
    return [
        dg.AssetCheckResult(
            check_name=UNIQUE_IDS, passed=duplicates == 0, metadata={"rows": rows, "duplicates": duplicates}
        ),
        dg.AssetCheckResult(
            check_name=ROWS_MATCH_API,
            passed=not mismatches,
            metadata={
                "partitions_checked": checked,
                "mismatched_partitions": len(mismatches),
                "mismatches": dg.MetadataValue.md(
                    "| partition | API | table |\n|---|---|---|\n" + "\n".join(lines) if lines else "none"
                ),
            },
        ),
    ]

"""Asset checks: one row per id, and as many rows per day as the API served.

No `from __future__ import annotations`: Dagster reads the `context` annotation.
"""

import dagster as dg

from rl_pipeline.sources import ApiSpec


def endpoint_checks(endpoint: str, spec: ApiSpec) -> list[dg.AssetChecksDefinition]:
    endpoint_spec = spec.endpoints[endpoint]
    table, id_field = endpoint_spec.table_name(endpoint), endpoint_spec.id_field

    @dg.asset_check(
        asset=table, name="unique_ids", required_resource_keys={"warehouse"}, description=f"One row per {id_field}."
    )
    def unique_ids(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        rows, duplicates = context.resources.warehouse.warehouse().duplicate_ids(table, id_field)
        return dg.AssetCheckResult(passed=duplicates == 0, metadata={"rows": rows, "duplicates": duplicates})

    @dg.asset_check(
        asset=table,
        name="rows_match_api",
        required_resource_keys={"warehouse"},
        description="Per day, the table holds as many rows as the API reported (its total) or served.",
    )
    def rows_match_api(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        checked, mismatches = context.resources.warehouse.warehouse().partition_mismatches(table)
        lines = [f"| {p} | {expected} | {actual} |" for p, expected, actual in mismatches[:50]]
        return dg.AssetCheckResult(
            passed=not mismatches,
            metadata={
                "partitions_checked": checked,
                "mismatched_partitions": len(mismatches),
                "mismatches": dg.MetadataValue.md(
                    "| partition | API | table |\n|---|---|---|\n" + "\n".join(lines) if lines else "none"
                ),
            },
        )

    return [unique_ids, rows_match_api]

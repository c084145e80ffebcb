"""``dynamodb-gsi``: every expected table exists and is ACTIVE, with the GSIs ActingWeb queries.

A missing or backfilling GSI makes ActingWeb's lookups by creator, trust secret or (legacy mode)
property value fail or scan; a PROVISIONED table with ActingWeb's old defaults (2 read / 1 write
units) throttles under the first burst of logins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from awops import dynamodb
from awops.abc import Job
from awops.checks._dynamodb_tables import TableWalk
from awops.metrics import catalogue
from awops.registry import register
from awops.result import Outcome
from awops.settings import dynamodb_name_list, setting

logger = logging.getLogger(__name__)


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class DynamoDBGsiOptions:
    min_read_capacity_units: int = setting(
        5, minimum=0, doc="a PROVISIONED table or GSI with fewer read units is a problem"
    )
    min_write_capacity_units: int = setting(
        5, minimum=0, doc="a PROVISIONED table or GSI with fewer write units is a problem"
    )
    report_unexpected_tables: bool = setting(
        True, doc="tables under the prefix that are not expected are a problem"
    )
    ignore_tables: list[str] = setting(
        [], check=dynamodb_name_list, doc="table suffixes never reported as unexpected"
    )


@register
class DynamoDBGsi(Job[DynamoDBGsiOptions]):
    name = "dynamodb-gsi"
    backend = "dynamodb"
    description = "expected tables ACTIVE, GSIs ACTIVE with the expected keys, capacity sane"
    default_schedule = "every 15m"
    default_timeout_seconds = 120.0
    Options = DynamoDBGsiOptions

    def _run(self) -> Outcome:
        settings = self.context.config.dynamodb
        state = dynamodb.shared_state(self.context.aws)
        metrics = self.context.metrics
        gsi_active = metrics.series(catalogue.DYNAMODB_GSI_ACTIVE)
        gsi_backfilling = metrics.series(catalogue.DYNAMODB_GSI_BACKFILLING)
        provisioned = metrics.series(catalogue.DYNAMODB_TABLE_PROVISIONED)

        def no_indexes(spec: dynamodb.ExpectedTable) -> None:
            for index in spec.indexes or {}:
                gsi_active.labels(table=spec.name, index=index).set(0)
                gsi_backfilling.labels(table=spec.name, index=index).set(0)

        walk = TableWalk(self.context, state, no_indexes)
        findings, tables = walk.findings, walk.details
        expected = dynamodb.expected_tables(settings)
        for spec, table in walk.present(expected):
            status = table.get("TableStatus", "UNKNOWN")
            if status != "ACTIVE":
                findings.append(f"{spec.name} is {status}, not ACTIVE")
            if spec.hash_key is not None:
                key = dynamodb.key_of(table.get("KeySchema", []))
                if key != (spec.hash_key, spec.range_key):
                    findings.append(
                        f"{spec.name} has key {_key_text(key)}, "
                        f"expected {_key_text((spec.hash_key, spec.range_key))}"
                    )
            mode = dynamodb.billing_mode(table)
            provisioned.labels(table=spec.name).set(1 if mode == "PROVISIONED" else 0)
            findings += self._capacity_findings(spec.name, mode, table)
            indexes = {gsi["IndexName"]: gsi for gsi in table.get("GlobalSecondaryIndexes") or []}
            for index_name, gsi in indexes.items():
                active = gsi.get("IndexStatus") == "ACTIVE"
                backfilling = bool(gsi.get("Backfilling", False))
                gsi_active.labels(table=spec.name, index=index_name).set(1 if active else 0)
                gsi_backfilling.labels(table=spec.name, index=index_name).set(
                    1 if backfilling else 0
                )
            if spec.indexes is not None:
                findings += _index_findings(spec.name, spec.indexes, indexes)
                for index_name in spec.indexes.keys() - indexes.keys():
                    gsi_active.labels(table=spec.name, index=index_name).set(0)
                    gsi_backfilling.labels(table=spec.name, index=index_name).set(0)
            tables[spec.name] = {
                "status": status,
                "billing_mode": mode,
                "items": table.get("ItemCount", 0),
                "size_bytes": table.get("TableSizeBytes", 0),
                "indexes": {
                    name: {
                        "status": gsi.get("IndexStatus"),
                        "backfilling": bool(gsi.get("Backfilling", False)),
                    }
                    for name, gsi in indexes.items()
                },
            }

        unexpected: list[str] = []
        if self.options.report_unexpected_tables:
            unexpected = self._unexpected_tables(state, settings.prefix, expected)
            if unexpected:
                findings.append(
                    f"unexpected table{'s' if len(unexpected) > 1 else ''} under "
                    f"{settings.prefix}_: {', '.join(unexpected)}"
                )

        index_count = sum(len(t.get("indexes", {})) for t in tables.values())
        details = {"tables": tables, "problems": findings, "unexpected_tables": unexpected}
        if findings:
            return Outcome.problem("; ".join(findings), **details)
        return Outcome.ok(
            f"{len(tables)} tables under {settings.prefix}_ ACTIVE, "
            f"{index_count} GSI{'s' if index_count != 1 else ''} ACTIVE as expected",
            **details,
        )

    def _capacity_findings(self, name: str, mode: str, table: dict[str, Any]) -> list[str]:
        if mode != "PROVISIONED":
            return []
        minimum = (self.options.min_read_capacity_units, self.options.min_write_capacity_units)
        found = []
        parts = [(name, table.get("ProvisionedThroughput", {}))] + [
            (f"{name} GSI {gsi['IndexName']}", gsi.get("ProvisionedThroughput", {}))
            for gsi in table.get("GlobalSecondaryIndexes") or []
        ]
        for what, throughput in parts:
            read = throughput.get("ReadCapacityUnits", 0)
            write = throughput.get("WriteCapacityUnits", 0)
            if read < minimum[0] or write < minimum[1]:
                found.append(
                    f"{what} is PROVISIONED with {read} read / {write} write units "
                    f"(minimum {minimum[0]} / {minimum[1]}; consider PAY_PER_REQUEST)"
                )
        return found

    def _unexpected_tables(self, state: Any, prefix: str, expected: list[Any]) -> list[str]:
        # awops' own lock table lives under the prefix too (awops/locks/dynamodb.py).
        known = {spec.name for spec in expected} | {f"{prefix}_{self.context.config.lock.table}"}
        ignored = {f"{prefix}_{suffix}" for suffix in self.options.ignore_tables}
        return sorted(
            name
            for name in state.list_tables()
            if name.startswith(f"{prefix}_") and name not in known and name not in ignored
        )


def _index_findings(table: str, expected: dict[str, str], present: dict[str, Any]) -> list[str]:
    found = []
    for index_name, hash_key in expected.items():
        gsi = present.get(index_name)
        if gsi is None:
            found.append(f"{table} GSI {index_name} is missing")
            continue
        key = dynamodb.key_of(gsi.get("KeySchema", []))
        if key != (hash_key, None):
            found.append(f"{table} GSI {index_name} has key {_key_text(key)}, expected {hash_key}")
        projection = gsi.get("Projection", {}).get("ProjectionType")
        if projection != dynamodb.GSI_PROJECTION:
            expected_projection = dynamodb.GSI_PROJECTION
            found.append(
                f"{table} GSI {index_name} projects {projection}, expected {expected_projection}"
            )
        status = gsi.get("IndexStatus")
        if status != "ACTIVE":
            found.append(f"{table} GSI {index_name} is {status}, not ACTIVE")
        if gsi.get("Backfilling"):
            found.append(f"{table} GSI {index_name} is backfilling")
    for index_name in sorted(present.keys() - expected.keys()):
        found.append(f"{table} has unexpected GSI {index_name}")
    return found


def _key_text(key: tuple[str | None, str | None]) -> str:
    hash_key, range_key = key
    return f"{hash_key}" if range_key is None else f"({hash_key}, {range_key})"

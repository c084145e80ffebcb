"""The walk the DynamoDB checks share: each expected table, described once, missing ones said.

The leading underscore keeps the registry from taking this module for a check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from awops.dynamodb import ExpectedTable, record_table_metrics

if TYPE_CHECKING:
    from awops.context import JobContext
    from awops.dynamodb import DynamoDBState


class TableWalk:
    """Walks ``specs`` for a check: what it found wrong, and what it says per table."""

    def __init__(
        self,
        context: JobContext,
        state: DynamoDBState,
        on_missing: Callable[[ExpectedTable], None] = lambda spec: None,
    ) -> None:
        self.context = context
        self.state = state
        self.on_missing = on_missing
        self.findings: list[str] = []
        self.details: dict[str, Any] = {}

    def present(self, specs: Iterable[ExpectedTable]) -> Iterator[tuple[ExpectedTable, Any]]:
        """Each table of ``specs`` that exists, with its description (after a stop check, and
        with its table series recorded); a missing one is reported and skipped."""
        for spec in specs:
            self.context.raise_if_stopping()
            table = self.state.describe_table(spec.name)
            record_table_metrics(self.context.metrics, spec.name, table)
            if table is None:
                self.missing(spec)
                continue
            yield spec, table

    def missing(self, spec: ExpectedTable) -> None:
        """Report ``spec``'s table as missing: a finding, its details, the check's own series."""
        self.on_missing(spec)
        self.findings.append(f"{spec.name} is missing")
        self.details[spec.name] = {"status": "MISSING"}

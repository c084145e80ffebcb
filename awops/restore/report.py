"""What a restore did: the JSON document of ``--json`` and the table printed without it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from awops.restore.checks import TableCount


@dataclass
class RestoreReport:
    """One restore's outcome; ``ok`` when it restored and every count matches."""

    database: str
    ok: bool = False
    backup: str = ""
    target: str = ""
    created: str = ""  # the backup's date: the server's clock at its snapshot
    duration_seconds: float = 0.0
    fetch_seconds: float = 0.0
    restore_seconds: float = 0.0
    count_seconds: float = 0.0
    jobs: int = 0
    database_created: bool = False
    database_dropped: bool = False
    replaced: bool = False
    selected_tables: list[str] = field(default_factory=list)
    skipped_foreign_keys: list[str] = field(default_factory=list)
    counts: list[TableCount] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str = ""
    globals: dict[str, Any] | None = None
    alembic: dict[str, Any] = field(default_factory=dict)
    actingweb_tables: dict[str, Any] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)

    def table_keys(self) -> dict[str, TableCount]:
        """Each table under its bare name, or ``schema.table`` where the bare name repeats."""
        bare = [count.table.partition(".")[2] for count in self.counts]
        return {
            (name if bare.count(name) == 1 else count.table): count
            for name, count in zip(bare, self.counts, strict=True)
        }

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "ok": self.ok,
            "backup": self.backup,
            "database": self.database,
            "duration_seconds": round(self.duration_seconds, 3),
            "tables": {
                key: {
                    "schema": count.table.partition(".")[0],
                    "rows": count.rows,
                    "expected": count.expected,
                }
                for key, count in self.table_keys().items()
            },
            "target": self.target,
            "created": self.created,
            "fetch_seconds": round(self.fetch_seconds, 3),
            "restore_seconds": round(self.restore_seconds, 3),
            "count_seconds": round(self.count_seconds, 3),
            "jobs": self.jobs,
            "database_created": self.database_created,
            "database_dropped": self.database_dropped,
            "replaced": self.replaced,
            "pg_restore_phases": self.phases,
            "problems": self.problems,
        }
        if self.selected_tables:
            document["selected_tables"] = self.selected_tables
            document["skipped_foreign_keys"] = self.skipped_foreign_keys
        if self.globals is not None:
            document["globals"] = self.globals
        if self.alembic:
            document["alembic"] = self.alembic
        if self.actingweb_tables:
            document["actingweb_tables"] = self.actingweb_tables
        if self.error:
            document["error"] = self.error
        return document

    def summary(self) -> str:
        if self.error:
            return f"restore into {self.database} failed: {self.error}"
        verdict = "rows match the manifest" if self.ok else "; ".join(self.problems)
        return (
            f"restored {self.backup} into {self.database} in {self.duration_seconds:.1f} s "
            f"(pg_restore {self.restore_seconds:.1f} s, -j {self.jobs}): {verdict}"
        )

"""After pg_restore: does the restored database hold what the manifest says?

Every restored table's row count is compared with the manifest's. When the manifest records
ActingWeb's schema (its Alembic revision and tables), a whole-database restore must have the
same revision in ``alembic_version`` and every one of those tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from awops.backup.rows import compare_counts
from awops.restore.manifest_fields import ManifestFacts

_ALEMBIC_TABLES = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = 'alembic_version' AND c.relkind IN ('r', 'p')
ORDER BY n.nspname = %s DESC, n.nspname
"""


@dataclass
class TableCount:
    table: str  # "schema.table"
    rows: int | None  # None: not in the restored database
    expected: int | None  # None: not in the manifest

    @property
    def ok(self) -> bool:
        return self.rows == self.expected


@dataclass
class RestoreChecks:
    """The comparisons' results; ``problems`` is empty when everything matches."""

    counts: list[TableCount] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    alembic: dict[str, Any] = field(default_factory=dict)
    actingweb_tables: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_restored(
    conn: Any,
    actual: dict[str, int],
    expected_rows: dict[str, int],
    facts: ManifestFacts,
    whole_database: bool,
    schema: str,
    fresh: bool,
) -> RestoreChecks:
    """Compare the database ``conn`` is connected to, whose tables hold ``actual`` rows,
    with the manifest.

    ``expected_rows`` holds the tables restored (all of the manifest's, or those chosen).
    In a ``fresh`` database (created by the restore) of a whole backup, a table the manifest
    does not list is a difference; in one that held tables before (``--replace``), those
    are the operator's and are not compared. ``schema`` is ActingWeb's schema, where
    ``alembic_version`` is looked for first.
    """
    checks = RestoreChecks()
    if whole_database and fresh:
        considered = actual
    else:
        considered = {t: actual[t] for t in expected_rows if t in actual}
    checks.problems.extend(compare_counts(expected_rows, considered))
    for table in sorted(expected_rows.keys() | considered.keys()):
        checks.counts.append(TableCount(table, considered.get(table), expected_rows.get(table)))
    if not whole_database:
        reason = "not checked: only chosen tables were restored"
        checks.alembic = {"checked": False, "reason": reason}
        checks.actingweb_tables = {"checked": False, "reason": reason}
        return checks
    _check_alembic(conn, facts, schema, checks)
    _check_actingweb_tables(actual, facts, checks)
    return checks


def _check_alembic(conn: Any, facts: ManifestFacts, schema: str, checks: RestoreChecks) -> None:
    if facts.alembic_revision is None:
        checks.alembic = {"checked": False, "reason": "the manifest records no revision"}
        return

    restored = ""
    found = conn.execute(_ALEMBIC_TABLES, (schema,)).fetchone()
    if found is not None:
        query = sql.SQL("SELECT version_num FROM {}.alembic_version").format(
            sql.Identifier(found[0])
        )
        revisions = sorted(str(row[0]) for row in conn.execute(query).fetchall())
        restored = ",".join(revisions)
    checks.alembic = {
        "checked": True,
        "expected": facts.alembic_revision,
        "restored": restored,
        "ok": restored == facts.alembic_revision,
    }
    if restored != facts.alembic_revision:
        checks.problems.append(
            f"Alembic revision {restored or 'none'} restored, the manifest records "
            f"{facts.alembic_revision or 'none'}"
        )


def _check_actingweb_tables(
    actual: dict[str, int], facts: ManifestFacts, checks: RestoreChecks
) -> None:
    if facts.actingweb_tables is None:
        checks.actingweb_tables = {"checked": False, "reason": "the manifest records none"}
        return
    # The manifest may name them bare or as schema.table.
    bare = {key.partition(".")[2] for key in actual}
    missing = [
        name
        for name in facts.actingweb_tables
        if name not in actual and not ("." not in name and name in bare)
    ]
    checks.actingweb_tables = {
        "checked": True,
        "expected": list(facts.actingweb_tables),
        "missing": missing,
        "ok": not missing,
    }
    if missing:
        checks.problems.append(f"ActingWeb table(s) not restored: {', '.join(missing)}")

"""What a backup knows of ActingWeb: its Alembic revision and which of its tables exist.

``pg-backup`` reads both in the dump's own snapshot and records them in the manifest;
``pg-backup-verify`` (and a restore) reads them again in the restored database and names
every difference. Tables are ``"schema.table"``, the form of the manifest's ``table_rows``,
in the schema ActingWeb uses (``PG_DB_PREFIX`` + ``PG_DB_SCHEMA``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from awops.actingweb import ALEMBIC_TABLE, PG_TABLES

if TYPE_CHECKING:
    from awops.backup.manifest import Manifest

ACTINGWEB_TABLES = tuple(sorted(PG_TABLES))

_EXISTING = """
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)
"""


@dataclass
class ActingWebState:
    """The Alembic revision ("" without ``alembic_version``) and the tables that exist."""

    schema: str
    alembic_revision: str
    tables: list[str]  # "schema.table", sorted


def read_actingweb_state(conn: Any, schema: str) -> ActingWebState:
    """What ``conn``'s database (in its current snapshot) holds of ActingWeb in ``schema``."""
    found = {
        row[0]
        for row in conn.execute(_EXISTING, (schema, [*ACTINGWEB_TABLES, ALEMBIC_TABLE])).fetchall()
    }
    revision = ""
    if ALEMBIC_TABLE in found:
        query = sql.SQL("SELECT version_num FROM {}.{} ORDER BY 1").format(
            sql.Identifier(schema), sql.Identifier(ALEMBIC_TABLE)
        )
        # One row normally; a migration graph with several heads has one per head.
        revision = ",".join(str(row[0]) for row in conn.execute(query).fetchall())
    tables = sorted(f"{schema}.{name}" for name in found if name != ALEMBIC_TABLE)
    return ActingWebState(schema, revision, tables)


def actingweb_differences(manifest: Manifest, conn: Any) -> list[str]:
    """One line per way the database of ``conn`` differs from what ``manifest`` recorded of
    ActingWeb (revision, tables); none for a manifest that recorded nothing (format < 3)."""
    if not manifest.records_actingweb:
        return []
    restored = read_actingweb_state(conn, manifest.actingweb_schema or "public")
    return compare_state(manifest, restored)


def compare_state(manifest: Manifest, restored: ActingWebState) -> list[str]:
    differences = []
    if restored.alembic_revision != manifest.alembic_revision:
        differences.append(
            f"Alembic revision: the manifest says {manifest.alembic_revision or 'none'!r}, "
            f"the restored database has {restored.alembic_revision or 'none'!r}"
        )
    missing = sorted(set(manifest.actingweb_tables) - set(restored.tables))
    extra = sorted(set(restored.tables) - set(manifest.actingweb_tables))
    if missing:
        differences.append(f"ActingWeb tables in the manifest, not restored: {', '.join(missing)}")
    if extra:
        differences.append(f"ActingWeb tables restored, not in the manifest: {', '.join(extra)}")
    return differences

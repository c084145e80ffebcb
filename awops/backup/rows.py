"""Per-table row counts: what the manifest promises and what verify checks after a restore."""

from __future__ import annotations

from typing import Any

from psycopg import sql

# Every ordinary table pg_dump dumps the data of: system schemas and temp schemas excluded.
_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def count_table_rows(conn: Any) -> dict[str, int]:
    """``{"schema.table": rows}`` for every user table, in the connection's current snapshot."""
    counts = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        (rows,) = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(rows)
    return counts


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """One line per difference between a manifest's counts and a restored database's."""
    differences = []
    for table in sorted(expected.keys() | actual.keys()):
        if table not in actual:
            differences.append(f"{table}: in the manifest ({expected[table]} rows), not restored")
        elif table not in expected:
            differences.append(f"{table}: restored ({actual[table]} rows), not in the manifest")
        elif expected[table] != actual[table]:
            differences.append(
                f"{table}: manifest {expected[table]} rows, restored {actual[table]}"
            )
    return differences

"""The least a Python restore that #15 describes has to do, and nothing else.

``bench.restore`` runs this beside ``awops restore postgresql`` to show how much of awops'
time over plain ``pg_restore`` any such program pays:

1. start Python and load psycopg (awops needs it for CREATE DATABASE and the counts);
2. read the dump once for its sha256 (the check comes before pg_restore touches anything);
3. CREATE DATABASE;
4. ``pg_restore -j N --no-owner --no-privileges --exit-on-error``;
5. ``count(*) FROM ONLY`` every table, one after another, once pg_restore is done
   (``--no-count`` leaves this out).

No manifest, no version checks, no progress log, no clean-up on failure: this is a yardstick,
not a restore tool. The connection settings come from libpq's variables (``PGHOST`` and the
rest), as for ``createdb`` in the baseline.

    python -m bench.restore_floor DUMP DATABASE JOBS [--no-count]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess

import psycopg
from psycopg import sql

READ_BYTES = 1024 * 1024


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as dump:
        while chunk := dump.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def count_every_table(database: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with psycopg.connect(dbname=database) as conn:
        tables = conn.execute(
            "SELECT schemaname, relname FROM pg_stat_user_tables ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            assert row is not None
            counts[f"{schema}.{table}"] = int(row[0])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dump")
    parser.add_argument("database")
    parser.add_argument("jobs", type=int)
    parser.add_argument("--no-count", action="store_true")
    args = parser.parse_args()
    sha256_of(args.dump)
    with psycopg.connect(dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.database)))
    subprocess.run(
        [
            "pg_restore",
            f"--jobs={args.jobs}",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--dbname={args.database}",
            args.dump,
        ],
        check=True,
    )
    if not args.no_count:
        count_every_table(args.database)


if __name__ == "__main__":
    main()

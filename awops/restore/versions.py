"""PostgreSQL client versions: whose ``pg_restore`` can read which backup.

The pattern that reads a version out of ``pg_dump --version`` text lives, private, in
:mod:`awops.backup.dump`; this module is its public face for the restore, so both read
versions the same way.
"""

from __future__ import annotations

from awops.backup.dump import _VERSION, client_version, resolve_program
from awops.restore.request import RestoreError


def major_version(text: str) -> int | None:
    """The major version in ``pg_dump (PostgreSQL) 15.4 ...`` text; None when it holds none."""
    match = _VERSION.search(text)
    return int(match[1]) if match else None


def check_pg_restore(program: str, pg_dump_version: str, backup: str) -> tuple[str, int]:
    """``(path, major)`` of ``pg_restore``, whose major version must be at least that of the
    ``pg_dump`` that wrote the backup (``pg_dump_version``, as its manifest records it)."""
    from awops.backup.dump import DumpError

    try:
        path = resolve_program(program)
        major, _text = client_version(path)
    except DumpError as exc:
        raise RestoreError(str(exc)) from None
    dumped_by = major_version(pg_dump_version)
    if dumped_by is None:
        raise RestoreError(
            f"backup {backup}: its manifest's pg_dump_version {pg_dump_version[:60]!r} names "
            "no PostgreSQL version"
        )
    if major < dumped_by:
        raise RestoreError(
            f"{path} is version {major} but backup {backup} was written by pg_dump "
            f"{dumped_by}: pg_restore must be at least as new (install "
            f"postgresql-client-{dumped_by} or set [jobs.pg-backup-verify] pg_restore)"
        )
    return path, major

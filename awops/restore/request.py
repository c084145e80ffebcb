"""What an operator asked of a restore, checked before anything is touched, and its errors.

The checks here need no server and no target: a request that fails them is a usage error
(exit 2). What needs the backup's manifest (a ``--table`` it does not hold) is checked by
:meth:`RestoreRequest.resolve_tables` once the manifest has been read, still before anything
is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from awops.backup.names import parse_backup_id
from awops.backup.target_url import TargetUrlError, parse_target_url
from awops.errors import AwopsError, JobError

LATEST = "latest"
# PostgreSQL cuts longer names to NAMEDATALEN - 1 bytes, with only a NOTICE: a restore into
# a longer name would create a database called something else than the operator wrote.
MAX_NAME_BYTES = 63
_TEMPLATES = ("template0", "template1")


class RestoreUsageError(AwopsError):
    """The request cannot be carried out as written; nothing was touched (exit 2)."""


class RestoreError(JobError):
    """The restore failed; what it created was removed (exit 1)."""


class RestoreRefused(RestoreError):
    """The restore would write into a database the operator did not name with --replace."""


class RestoreInterrupted(RestoreError):
    """SIGTERM or SIGINT arrived: children killed, what the restore created removed."""


@dataclass(frozen=True)
class RestoreRequest:
    """``awops restore postgresql`` as the operator wrote it."""

    backup: str  # "latest" or a backup id
    to_database: str
    target: str = ""  # a target URL; empty = every [backup] target
    tables: tuple[str, ...] = ()  # "name" or "schema.name"; empty = everything
    jobs: int = 0  # pg_restore --jobs; 0 = the server's cores, at most 4
    apply_globals: bool = False
    replace: str = ""
    identity_file: str = ""
    work_dir: str = ""
    keep_owner: bool = False  # pg_restore without --no-owner and --no-privileges

    @property
    def replaces(self) -> bool:
        return bool(self.replace)

    def check(self) -> None:
        """Raise :class:`RestoreUsageError` for a request that cannot be carried out."""
        if self.backup != LATEST and parse_backup_id(self.backup) is None:
            raise RestoreUsageError(
                f"backup {self.backup!r}: expected 'latest' or a backup id like "
                "actingweb-20261205T030000.000Z (awops backups list shows them)"
            )
        check_database_name(self.to_database, "--to-database")
        if self.replace and self.replace != self.to_database:
            raise RestoreUsageError(
                f"--replace names {self.replace!r} but the restore goes into "
                f"{self.to_database!r}: --replace must repeat the --to-database name"
            )
        if self.target:
            try:
                parse_target_url(self.target)
            except TargetUrlError as exc:
                raise RestoreUsageError(f"--target: {exc}") from None
        for table in self.tables:
            if not table or "\x00" in table:
                raise RestoreUsageError(f"--table {table!r}: expected a table name")
        if self.jobs < 0:
            raise RestoreUsageError(f"--jobs {self.jobs}: expected at least 1")

    def resolve_tables(self, backup: str, table_rows: dict[str, int]) -> list[str]:
        """The manifest's ``schema.table`` keys that ``--table`` names, in the order given.

        A bare name matches the table of that name in any schema; one held by several
        schemas must be qualified. A name the backup does not hold is a usage error.
        """
        resolved: list[str] = []
        for table in self.tables:
            if table in table_rows:
                matches = [table]
            else:
                matches = [key for key in table_rows if key.partition(".")[2] == table]
            if not matches:
                held = ", ".join(sorted(table_rows)[:12]) or "no tables"
                raise RestoreUsageError(
                    f"--table {table!r}: backup {backup} holds no such table (it holds {held})"
                )
            if len(matches) > 1:
                raise RestoreUsageError(
                    f"--table {table!r} is in several schemas of backup {backup}: "
                    f"{', '.join(sorted(matches))}; name one as schema.table"
                )
            if matches[0] not in resolved:
                resolved.append(matches[0])
        return resolved


def check_database_name(name: str, option: str) -> None:
    """Raise :class:`RestoreUsageError` unless ``name`` is a database a restore may create."""
    if not name:
        raise RestoreUsageError(f"{option}: expected a database name")
    if "\x00" in name:
        raise RestoreUsageError(f"{option}: a database name cannot hold a NUL character")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise RestoreUsageError(
            f"{option} {name[:20]!r}...: PostgreSQL names are at most {MAX_NAME_BYTES} bytes"
        )
    if name in _TEMPLATES:
        raise RestoreUsageError(f"{option} {name}: a template database is never restored into")

"""PostgreSQL client versions: whose ``pg_restore`` can read which backup."""

from __future__ import annotations

from awops.backup.dump import DumpError, resolve_program
from awops.restore.backup_parts import CLIENT_VERSION_PATTERN
from awops.restore.children import CapturedRun
from awops.restore.request import RestoreError
from awops.restore.stopping import StopRequest


def major_version(text: str) -> int | None:
    """The major version in ``pg_dump (PostgreSQL) 15.4 ...`` text; None when it holds none."""
    match = CLIENT_VERSION_PATTERN.search(text)
    return int(match[1]) if match else None


class PgRestoreVersion:
    """``pg_restore --version``, asked as soon as the restore starts and read when needed."""

    def __init__(self, program: str, env: dict[str, str], stop: StopRequest) -> None:
        try:
            self.path = resolve_program(program)
        except DumpError as exc:
            raise RestoreError(str(exc)) from None
        self._run = CapturedRun([self.path, "--version"], env, stop, f"{self.path} --version")

    def check(self, pg_dump_version: str, backup: str) -> int:
        """pg_restore's major version, which must be at least that of the ``pg_dump`` that
        wrote ``backup`` (``pg_dump_version``, as its manifest records it)."""
        output = self._run.result()
        major = major_version(output)
        if major is None:
            raise RestoreError(
                f"{self.path} --version printed no PostgreSQL version: {output[:100]!r}"
            )
        dumped_by = major_version(pg_dump_version)
        if dumped_by is None:
            raise RestoreError(
                f"backup {backup}: its manifest's pg_dump_version {pg_dump_version[:60]!r} "
                "names no PostgreSQL version"
            )
        if major < dumped_by:
            raise RestoreError(
                f"{self.path} is version {major} but backup {backup} was written by pg_dump "
                f"{dumped_by}: pg_restore must be at least as new (install "
                f"postgresql-client-{dumped_by} or set [jobs.pg-backup-verify] pg_restore)"
            )
        return major

    def close(self) -> None:
        self._run.close()

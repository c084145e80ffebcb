"""``awops restore postgresql``: a pg-backup into a database the operator names.

In order, and nothing written before the last check passed:

1. the request (exit 2 when it cannot be carried out), the server's clock and what the
   database to restore into holds: one that exists and holds a table is refused unless
   ``--replace`` repeats its name;
2. the backup (``latest`` by the server's clock, or an id), its manifest, the tables it names,
   its roles object for ``--globals``, pg_restore's version against the dump's;
3. the dump (and roles object) fetched into the work directory after checking its free
   space, decrypted as a stream, its size and sha256 checked; a local unencrypted dump is
   only hashed and read in place; its table of contents listed (``pg_restore --list``, run
   beside the hash of a dump read in place, else beside ``CREATE DATABASE``);
4. then the roles (one transaction), ``CREATE DATABASE`` when it is missing, ``pg_restore -j N``
   and the comparison of every restored table's rows with the manifest (and, for a whole
   database, its Alembic revision and ActingWeb's tables).

A failure or a stop request after step 4 began drops the database when the restore created
it; pg_restore and its workers are killed with their process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awops.backup.catalog import ServerClock
from awops.backup.dump import client_environment
from awops.backup.encryption import AgeError, read_identities
from awops.backup.manifest import iso_utc
from awops.backup.targets import Target
from awops.config import Config
from awops.errors import JobError
from awops.restore.checks import check_restored
from awops.restore.children import CapturedRun, run_captured
from awops.restore.counting import RowCounter
from awops.restore.database import DatabaseState, Server
from awops.restore.fetch import (
    FetchedObject,
    Fetcher,
    StoredObject,
    check_free_space,
    free_bytes,
)
from awops.restore.globals import apply_globals
from awops.restore.locate import LocatedBackup, locate_backup
from awops.restore.manifest_fields import GlobalsObject, ManifestFacts, read_facts
from awops.restore.pg_restore import PgRestoreRun
from awops.restore.report import RestoreReport
from awops.restore.request import (
    RestoreError,
    RestoreRefused,
    RestoreRequest,
    RestoreUsageError,
)
from awops.restore.stopping import StopRequest
from awops.restore.toc import Selection, TocEntry, parse_toc, select_tables
from awops.restore.versions import PgRestoreVersion
from awops.staging import staging_directory

logger = logging.getLogger(__name__)

MAX_DEFAULT_JOBS = 4
LIST = "pg_restore --list"


@dataclass
class RestoreSetup:
    """What a restore is handed: where it writes and reads, and its defaults."""

    server: Server
    # The targets, opened on first use: opening S3 imports boto3 and builds a client, which
    # the command line does while this restore first talks to PostgreSQL.
    targets: Callable[[], list[Target]]
    source_database: str  # whose backups "latest" means: [postgresql] dbname
    schema: str  # ActingWeb's, where alembic_version is looked for first
    pg_restore: str = "pg_restore"
    identity_file: str = ""  # [jobs.pg-backup-verify] identity_file
    work_dir: str = ""  # [jobs.pg-backup-verify] work_dir
    progress_interval_seconds: float = 5.0
    cpu_count: Callable[[], int | None] = os.cpu_count
    monotonic: Callable[[], float] = time.monotonic
    free_bytes: Callable[[Path], int] = free_bytes


def setup_from_config(
    config: Config, targets: Callable[[], list[Target]], stop: StopRequest
) -> RestoreSetup:
    """The setup the configuration gives: ``[postgresql]`` for the server, the defaults of
    ``[jobs.pg-backup-verify]`` (pg_restore, identity_file, work_dir, maintenance_dbname)."""
    verify = config.jobs["pg-backup-verify"].options
    return RestoreSetup(
        server=Server(config.postgresql, stop, verify.maintenance_dbname),
        targets=targets,
        source_database=config.postgresql.dbname,
        schema=config.postgresql.search_schema,
        pg_restore=verify.pg_restore,
        identity_file=verify.identity_file,
        work_dir=verify.work_dir,
    )


@dataclass
class _Fetched:
    dump: Path
    globals_sql: str | None
    listing: CapturedRun  # pg_restore --list of the dump: read while CREATE DATABASE runs
    known_tables: list[str]  # every table of the backup: "schema.table"
    selection: Selection | None = None
    list_file: Path | None = None

    def entries(self) -> list[TocEntry]:
        """What pg_restore restores: the selected tables' entries, else every entry."""
        if self.selection is not None:
            return self.selection.entries
        return parse_toc(self.listing.result()).entries


class PostgresRestore:
    """One ``awops restore postgresql`` run; :meth:`run` returns its report."""

    def __init__(self, request: RestoreRequest, setup: RestoreSetup, stop: StopRequest) -> None:
        self.request = request
        self.setup = setup
        self.stop = stop
        self.server = setup.server

    def run(self) -> RestoreReport:
        """Restore; :class:`RestoreUsageError` (nothing touched) propagates, every other
        failure is the report's ``error``."""
        self.request.check()
        work_dir = self._work_dir()
        report = RestoreReport(database=self.request.to_database)
        started = self.setup.monotonic()
        try:
            self._restore(report, work_dir)
        except JobError as exc:
            report.error = str(exc)
            logger.error("%s", report.summary())
        finally:
            report.duration_seconds = self.setup.monotonic() - started
        report.ok = not report.error and not report.problems
        return report

    def _work_dir(self) -> Path:
        chosen = self.request.work_dir or self.setup.work_dir or tempfile.gettempdir()
        path = Path(chosen)
        if not path.is_dir():
            source = "--work-dir" if self.request.work_dir else "[jobs.pg-backup-verify] work_dir"
            raise RestoreUsageError(f"{source} {chosen}: expected an existing directory")
        return path

    def _restore(self, report: RestoreReport, work_dir: Path) -> None:
        # Asked now, answered while PostgreSQL is reached.
        version = PgRestoreVersion(self.setup.pg_restore, client_environment({}), self.stop)
        try:
            self._restore_with(report, work_dir, version)
        finally:
            version.close()

    def _restore_with(
        self, report: RestoreReport, work_dir: Path, version: PgRestoreVersion
    ) -> None:
        name = self.request.to_database
        # One maintenance session for the whole restore: every connection costs a round of
        # authentication, and the checks, the roles and CREATE DATABASE all run on it.
        with self.server.maintenance(avoid=name) as admin:
            clock = ServerClock.read(admin)
            self._refuse_unless_named(self.server.state(admin, name))
            located = locate_backup(
                self.setup.targets(),
                self.setup.source_database,
                self.request.backup,
                clock.now(),
            )
            manifest = located.manifest
            report.backup, report.target = located.backup, located.target.url
            report.created = iso_utc(located.dated.created)
            facts = read_facts(manifest, located.raw_manifest, located.manifest_where)
            tables = self.request.resolve_tables(located.backup, manifest.table_rows)
            roles = (
                self._roles_object(facts, located.backup) if self.request.apply_globals else None
            )
            version.check(manifest.pg_dump_version, located.backup)
            program = version.path
            encrypted = manifest.encrypted or (roles is not None and roles.encrypted)
            identities = self._identities(located.backup) if encrypted else []
            report.jobs = self._jobs()
            logger.info(
                "restoring %s (%s, %.1f MiB%s) from %s into database %s on %s",
                located.backup,
                report.created,
                manifest.size_bytes / 1048576,
                ", age-encrypted" if manifest.encrypted else "",
                located.target.url,
                name,
                self.server.display,
            )
            with (
                staging_directory("awops-restore-", work_dir) as staging,
                contextlib.ExitStack() as children,
            ):
                fetched = self._fetch(
                    admin,
                    located,
                    roles,
                    identities,
                    tables,
                    Path(staging),
                    program,
                    report,
                    children,
                )
                expected = {t: manifest.table_rows[t] for t in tables} if tables else None
                self._write(
                    admin, report, program, fetched, expected or dict(manifest.table_rows), facts
                )

    def _refuse_unless_named(self, state: DatabaseState) -> None:
        name = self.request.to_database
        if state.tables and self.request.replace != name:
            raise RestoreRefused(
                f"{state.describe(name)}: nothing restored. To write into it (each object "
                f"the backup restores is dropped and re-created), add --replace {name}"
            )

    def _roles_object(self, facts: ManifestFacts, backup: str) -> GlobalsObject:
        roles = facts.globals
        if roles is None:
            raise RestoreError(
                f"--globals: backup {backup} has no roles object (its manifest records none: "
                "written by an older awops); restore without --globals and create the roles "
                "by hand"
            )
        if roles.status != "ok":
            raise RestoreError(
                f"--globals: backup {backup} has no roles object: {roles.reason or 'skipped'}"
            )
        return roles

    def _identities(self, backup: str) -> list[bytes]:
        path = self.request.identity_file or self.setup.identity_file
        if not path:
            raise RestoreUsageError(
                f"backup {backup} is age-encrypted: pass --identity FILE or set "
                "[jobs.pg-backup-verify] identity_file"
            )
        try:
            return read_identities(Path(path))
        except AgeError as exc:
            raise RestoreUsageError(str(exc)) from None

    def _jobs(self) -> int:
        if self.request.jobs:
            return self.request.jobs
        cores = self.setup.cpu_count() or 1
        host = self.server.settings.host
        if host not in ("", "localhost", "127.0.0.1", "::1") and not host.startswith("/"):
            logger.info(
                "pg_restore -j %d: this host's cores (at most %d); pass --jobs to match the "
                "server's",
                min(cores, MAX_DEFAULT_JOBS),
                MAX_DEFAULT_JOBS,
            )
        return max(1, min(cores, MAX_DEFAULT_JOBS))

    def _fetch(
        self,
        admin: Any,
        located: LocatedBackup,
        roles: GlobalsObject | None,
        identities: list[bytes],
        tables: list[str],
        staging: Path,
        program: str,
        report: RestoreReport,
        children: contextlib.ExitStack,
    ) -> _Fetched:
        manifest = located.manifest
        target = located.target
        dump_object = StoredObject(
            manifest.dump_file, manifest.size_bytes, manifest.sha256, manifest.encrypted
        )
        roles_object = (
            StoredObject(roles.file, roles.size_bytes, roles.sha256, roles.encrypted)
            if roles is not None
            else None
        )
        fetcher = Fetcher(
            target,
            staging,
            self.stop,
            lambda: identities,
            self.setup.progress_interval_seconds,
            self.setup.monotonic,
        )
        staged = [
            o for o in (dump_object, roles_object) if o is not None and fetcher.in_place(o) is None
        ]
        check_free_space(staging, sum(o.size_bytes for o in staged), self.setup.free_bytes)
        dump, listing = self._fetch_dump(fetcher, dump_object, located.backup, program)
        children.callback(listing.close)
        report.fetch_seconds = dump.seconds
        globals_sql = None
        if roles_object is not None:
            globals_file = fetcher.fetch(roles_object, f"roles of {located.backup}")
            globals_sql = globals_file.path.read_text(encoding="utf-8")
        if not tables:
            return _Fetched(dump.path, globals_sql, listing, list(manifest.table_rows))

        env = client_environment({})

        def read_ddl(entries: list[TocEntry]) -> str:
            ddl_list = staging / "ddl.list"
            ddl_list.write_text("".join(e.line + "\n" for e in entries))
            command = [program, f"--use-list={ddl_list}", "--file=-", str(dump.path)]
            return run_captured(command, env, self.stop, "pg_restore (reading DDL)")

        state = self.server.state(admin, self.request.to_database)
        selection = select_tables(
            parse_toc(listing.result()),
            tables,
            read_ddl,
            state.schemas or ("public",),
            manifest.table_rows.keys(),
        )
        for skipped in selection.skipped_foreign_keys:
            logger.warning("foreign key not restored: %s", skipped)
        report.selected_tables = selection.tables
        report.skipped_foreign_keys = selection.skipped_foreign_keys
        list_file = staging / "restore.list"
        list_file.write_text(selection.use_list())
        return _Fetched(
            dump.path, globals_sql, listing, list(manifest.table_rows), selection, list_file
        )

    def _fetch_dump(
        self, fetcher: Fetcher, stored: StoredObject, backup: str, program: str
    ) -> tuple[FetchedObject, CapturedRun]:
        """The dump, checked, and ``pg_restore --list`` of it started: its answer is read by
        the caller when it needs it (for a whole database, while CREATE DATABASE runs)."""
        in_place = fetcher.in_place(stored)
        if in_place is None:
            dump = fetcher.fetch(stored, f"dump of {backup}")
            return dump, self._list(program, dump.path)
        # A dump read in place is listed while it is hashed: --list only reads, and its answer
        # is used only once the hash matched.
        listing = self._list(program, in_place)
        try:
            return fetcher.fetch(stored, f"dump of {backup}"), listing
        except BaseException:
            listing.close()
            raise

    def _list(self, program: str, dump: Path) -> CapturedRun:
        """``pg_restore --list`` of ``dump``, started; its answer is read when needed."""
        return CapturedRun([program, "--list", str(dump)], client_environment({}), self.stop, LIST)

    def _write(
        self,
        admin: Any,
        report: RestoreReport,
        program: str,
        fetched: _Fetched,
        expected: dict[str, int],
        facts: ManifestFacts,
    ) -> None:
        """Roles, CREATE DATABASE, pg_restore, counts: the steps that change the server."""
        name = self.request.to_database
        self.stop.check()
        # Again, right before writing: the fetch may have taken long.
        state = self.server.state(admin, name)
        self._refuse_unless_named(state)
        if fetched.globals_sql is not None:
            report.globals = apply_globals(admin, fetched.globals_sql).as_json()
        self.stop.check()
        if not state.exists:
            self.server.create(admin, name)
            report.database_created = True
        report.replaced = bool(state.tables)
        try:
            entries = fetched.entries()
            self.stop.check()
            pg_restore = PgRestoreRun(
                program,
                fetched.dump,
                name,
                report.jobs,
                keep_owner=self.request.keep_owner,
                clean=bool(state.tables),
                list_file=fetched.list_file,
            )
            checks = pg_restore.run(
                self.server,
                len(entries),
                RowCounter(entries, fetched.known_tables),
                lambda conn, counts: check_restored(
                    conn,
                    counts,
                    expected,
                    facts,
                    whole_database=fetched.selection is None,
                    schema=self.setup.schema,
                    fresh=not state.tables,
                ),
                self.setup.progress_interval_seconds,
                self.setup.monotonic,
            )
            report.restore_seconds = pg_restore.seconds
            report.count_seconds = pg_restore.count_seconds
            report.phases = list(pg_restore.phases)
        except BaseException:
            if report.database_created:
                self._drop_created(report)
            raise
        report.counts = checks.counts
        report.problems = checks.problems
        report.alembic = checks.alembic
        report.actingweb_tables = checks.actingweb_tables
        if checks.problems:
            logger.error(
                "restored %s into %s, but it differs from the manifest: %s; the database is "
                "kept for inspection",
                report.backup,
                name,
                "; ".join(checks.problems),
            )

    def _drop_created(self, report: RestoreReport) -> None:
        try:
            self.server.drop(report.database)
            report.database_dropped = True
        except Exception as exc:  # the original failure is what the operator must see first
            logger.error(
                "could not drop database %s, created by this restore: %s; drop it by hand",
                report.database,
                exc,
            )

"""One run of ``pg-backup-verify``: check, list, restore into a scratch database, compare.

The backup verified is the newest by the database server's clock (see
:mod:`awops.backup.catalog`). Every manifest on the target is read and checked first: one that
cannot be read, or a backup dated after the server's clock, leaves it unknown which backup is
the newest, so that is a ``problem`` naming the file before any restore starts.

The dump (and the roles object) is checked against the manifest's size and sha256 (decrypted
with an age identity when it is encrypted), listed with ``pg_restore --list``, restored with
parallel jobs into a scratch database ``awops_verify_<time>``; every table's row count, the
Alembic revision and which of ActingWeb's tables exist are compared with the manifest. The
scratch database is dropped whatever happens; one a run that died left behind is dropped by
the next run (see :mod:`awops.backup.scratch`). A stop request terminates pg_restore at once: a
restore has no point at which to wind up. The verdict is recorded beside the backup, as
``<id>.verify.json`` on the target it verified (:mod:`awops.backup.records`), so
``awops backups list`` shows when each backup was last verified and whether it passed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import sql

from awops.backup.actingweb import actingweb_differences
from awops.backup.catalog import DatedBackup, ServerClock, read_catalog
from awops.backup.dump import DumpError, client_environment, resolve_program, run_client
from awops.backup.fetch import (
    IntegrityProblem,
    check_globals,
    fetch_archive,
    identities_from,
    list_archive,
)
from awops.backup.manifest import Manifest
from awops.backup.names import verify_record_name
from awops.backup.options import ALL_TARGETS
from awops.backup.records import TableCheck, VerifyRecord, iso_z
from awops.backup.rows import compare_counts, count_table_rows
from awops.backup.scratch import Creator, leftovers, scratch_name
from awops.backup.targets import Target, configured_targets
from awops.errors import JobError
from awops.metrics import catalogue
from awops.pg import PgConnector
from awops.result import Outcome, Status
from awops.staging import staging_directory

if TYPE_CHECKING:
    from awops.backup.options import PgBackupVerifyOptions
    from awops.context import JobContext

logger = logging.getLogger(__name__)


class VerifyRun:
    """One run of ``pg-backup-verify`` against the newest backup on one target."""

    def __init__(self, context: JobContext, options: PgBackupVerifyOptions) -> None:
        self.context = context
        self.options = options

    def run(self) -> Outcome:
        targets = self._targets()
        with self.context.pg.connection() as conn:
            clock = ServerClock.read(conn)
        if len(targets) == 1:
            return self._verify(targets[0], clock)
        # target = "all": each target's copy restored in turn; one that cannot be read is an
        # error of its own and does not keep the others from being verified.
        outcomes: dict[str, Outcome] = {}
        for target in targets:
            if self.context.should_stop():
                outcomes[target.url] = Outcome.error("not verified: stopping")
                continue
            try:
                outcomes[target.url] = self._verify(target, clock)
            except JobError as exc:
                outcomes[target.url] = Outcome.error(str(exc))
        return _combined(outcomes)

    def _verify(self, target: Target, clock: ServerClock) -> Outcome:
        database = self.context.pg.settings.dbname
        server_now = clock.now()
        catalog = read_catalog(target, database, server_now)
        # Either leaves it unknown which backup is the newest: nothing is restored.
        if catalog.unreadable:
            return Outcome.problem(
                f"{catalog.unreadable_message()}; nothing restored",
                target=target.url,
                unreadable_manifests=catalog.unreadable,
            )
        if catalog.future:
            return Outcome.problem(
                f"{catalog.future_message(server_now)}; nothing restored",
                target=target.url,
                future_backups=[dated.describe() for dated in catalog.future],
            )
        if catalog.newest is None:
            return Outcome.problem(
                f"no complete backup of {database} on {target.url}", target=target.url
            )
        dated: DatedBackup = catalog.newest
        newest, manifest = dated.stored, dated.manifest
        details: dict[str, Any] = {"target": target.url, **dated.describe()}
        if self.context.dry_run:
            return _dry_run(target, dated, details)
        started = time.monotonic()
        identities = identities_from(
            self.options.identity_file, "set jobs.pg-backup-verify.identity_file"
        )
        restored: dict[str, int] = {}
        try:
            with staging_directory("awops-verify-", self.options.work_dir) as staging:
                archive = fetch_archive(
                    target,
                    newest,
                    manifest,
                    Path(staging),
                    identities,
                    self.context.raise_if_stopping,
                )
                check_globals(target, manifest, identities)
                details["toc_entries"] = self._list(archive)
                restore_seconds, restored, differences = self._restore_and_compare(
                    archive, manifest
                )
        except IntegrityProblem as problem:
            self._record(target, manifest, clock, [str(problem)], restored, None, details)
            return Outcome.problem(f"backup {newest.backup} on {target.url}: {problem}", **details)

        self._record(target, manifest, clock, differences, restored, restore_seconds, details)
        labels = {"backend": "postgresql", "target": target.url}
        metrics = self.context.metrics
        metrics.series(catalogue.BACKUP_RESTORE_DURATION).labels(**labels).set(restore_seconds)
        details.update(
            restore_seconds=round(restore_seconds, 3),
            verify_seconds=round(time.monotonic() - started, 3),
            tables=len(manifest.table_rows),
            rows=sum(manifest.table_rows.values()),
            size_bytes=manifest.size_bytes,
            encrypted=manifest.encrypted,
            alembic_revision=manifest.alembic_revision,
        )
        if differences:
            details["differences"] = differences
            return Outcome.problem(
                f"backup {newest.backup} restored but differs from its manifest in "
                f"{len(differences)} way(s): {differences[0]}",
                **details,
            )
        metrics.series(catalogue.BACKUP_VERIFY_LAST_SUCCESS).labels(**labels).set(clock.now())
        return Outcome.ok(
            f"backup {newest.backup} restored in {restore_seconds:.1f} s; "
            f"{details['rows']} rows in {details['tables']} tables match the manifest",
            **details,
        )

    def _record(
        self,
        target: Target,
        manifest: Manifest,
        clock: ServerClock,
        problems: list[str],
        restored: dict[str, int],
        restore_seconds: float | None,
        details: dict[str, Any],
    ) -> None:
        """Write the verdict beside the backup; a target that refuses it is logged and named
        in ``details.record_error``, the verdict itself stands."""
        tables = {
            table: TableCheck(restored.get(table), manifest.table_rows.get(table))
            for table in sorted(manifest.table_rows.keys() | restored.keys())
        }
        record = VerifyRecord(
            at=iso_z(clock.now()),
            ok=not problems,
            problems=problems,
            tables=tables if restored else {},
            restore_seconds=restore_seconds,
        )
        try:
            target.write_small(verify_record_name(manifest.backup), record.to_json())
        except JobError as exc:
            logger.error(
                "could not record the verify of %s on %s: %s", manifest.backup, target.url, exc
            )
            details["record_error"] = str(exc)

    def _targets(self) -> list[Target]:
        settings = self.context.config.backup
        wanted = self.options.target
        if wanted and wanted != ALL_TARGETS:
            settings = dataclasses.replace(settings, targets=[wanted])
        elif not settings.targets:
            raise JobError("no backup target: set [backup] targets or AWOPS_BACKUP_TARGET")
        elif not wanted:
            settings = dataclasses.replace(settings, targets=settings.targets[:1])
        return configured_targets(settings, self.context.aws)

    def _list(self, archive: Path) -> int:
        try:
            return list_archive(
                self.options.pg_restore,
                archive,
                self.context.on_cancel,
                should_stop=self.context.should_stop,
            )
        except IntegrityProblem:
            self.context.raise_if_stopping()
            raise

    def _verify_connector(self) -> PgConnector:
        pg = self.context.pg
        o = self.options
        if not (o.verify_host or o.verify_port or o.verify_user or o.maintenance_dbname):
            return pg
        settings = dataclasses.replace(
            pg.settings,
            host=o.verify_host or pg.settings.host,
            port=o.verify_port or pg.settings.port,
            user=o.verify_user or pg.settings.user,
            password=o.verify_password or pg.settings.password,
            dbname=o.maintenance_dbname or ("postgres" if o.verify_host else pg.settings.dbname),
        )
        return PgConnector(settings)

    def _restore_and_compare(
        self, archive: Path, manifest: Manifest
    ) -> tuple[float, dict[str, int], list[str]]:
        """Restore into a scratch database: (seconds, rows per table, every difference)."""
        server = self._verify_connector()
        scratch = scratch_name(self.context.clock(), self.context.run_id)
        scratch_server = PgConnector(dataclasses.replace(server.settings, dbname=scratch))
        with server.dedicated_connection() as admin:
            row = admin.execute("SHOW server_version_num").fetchone()
            version = int(row[0]) if row else 0
            self._drop_stale(admin, version)
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch))
            )
            logger.info("restoring %s into scratch database %s", manifest.backup, scratch)
            try:
                creator = Creator.current()
                if creator is not None:
                    admin.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                            sql.Identifier(scratch), sql.Literal(creator.comment())
                        )
                    )
                # Connected until the drop: a later run sees the database is in use.
                with scratch_server.dedicated_connection() as conn:
                    self.context.on_cancel(lambda: None if conn.closed else conn.cancel_safe())
                    started = time.monotonic()
                    self._restore(archive, scratch, scratch_server)
                    restore_seconds = time.monotonic() - started
                    restored = count_table_rows(conn)
                    differences = compare_counts(manifest.table_rows, restored)
                    differences += actingweb_differences(manifest, conn)
            finally:
                self._drop(admin, scratch, version)
        return restore_seconds, restored, differences

    def _restore(self, archive: Path, scratch: str, scratch_server: PgConnector) -> None:
        program = resolve_program(self.options.pg_restore)
        command = [
            program,
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--no-password",
            f"--jobs={self.options.restore_jobs}",
            f"--dbname={scratch}",
            str(archive),
        ]
        try:
            run_client(
                command,
                client_environment(scratch_server.libpq_environment()),
                self.context.on_cancel,
                "pg_restore",
                should_stop=self.context.should_stop,
            )
        except DumpError as exc:
            self.context.raise_if_stopping()
            raise IntegrityProblem(str(exc)) from None

    def _drop_stale(self, admin: Any, server_version_num: int) -> None:
        """Drop the scratch databases of verify runs that died (SIGKILL, host lost); never
        one a live run, here or on another replica, is restoring into."""
        for name, why in leftovers(admin, self.context.clock()):
            logger.warning("dropping scratch database %s left by a verify that died: %s", name, why)
            try:
                self._drop(admin, name, server_version_num)
            except Exception:  # logged by _drop; the verify itself goes on
                continue

    def _drop(self, admin: Any, scratch: str, server_version_num: int) -> None:
        drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(scratch))
        if server_version_num >= 130000:
            drop = sql.SQL("{} WITH (FORCE)").format(drop)
        try:
            admin.execute(drop)
        except Exception:
            logger.error("could not drop scratch database %s; drop it by hand", scratch)
            raise


def _dry_run(target: Target, dated: DatedBackup, details: dict[str, Any]) -> Outcome:
    """What a run would restore, checked as far as reading allows: the manifest (read with
    the catalog) and the dump's presence and size. No download, no database created."""
    manifest, dump_file = dated.manifest, dated.stored.dump_file
    stored_size = target.object_sizes(dump_file).get(dump_file)
    details.update(
        dry_run=True,
        would_restore=dated.backup,
        size_bytes=manifest.size_bytes,
        stored_size_bytes=stored_size,
        tables=len(manifest.table_rows),
        rows=sum(manifest.table_rows.values()),
        encrypted=manifest.encrypted,
    )
    if stored_size != manifest.size_bytes:
        found = "missing" if stored_size is None else f"{stored_size} bytes"
        return Outcome.problem(
            f"dry run: backup {dated.backup} on {target.url}: its dump {dump_file} is {found}, "
            f"the manifest says {manifest.size_bytes} bytes; nothing restored",
            **details,
        )
    return Outcome.ok(
        f"dry run: would restore backup {dated.backup} ({manifest.size_bytes} bytes, "
        f"{details['rows']} rows in {details['tables']} tables) from {target.url} into a "
        "scratch database; its dump is there at the manifest's size (sha256 not read: "
        "awops backups check reads it)",
        **details,
    )


def _combined(outcomes: dict[str, Outcome]) -> Outcome:
    """One outcome for several targets: the worst status; the summary names each target that
    failed, or says all passed; ``details.targets`` holds each target's own."""
    order = (Status.ERROR, Status.PROBLEM, Status.OK)
    worst = min((outcome.status for outcome in outcomes.values()), key=order.index)
    details = {
        url: {"status": str(outcome.status), "summary": outcome.summary, **outcome.details}
        for url, outcome in outcomes.items()
    }
    failed = [(url, o) for url, o in outcomes.items() if o.status is not Status.OK]
    if failed:
        summary = f"{len(failed)} of {len(outcomes)} targets failed verification: " + "; ".join(
            f"{url}: {outcome.summary}" for url, outcome in failed
        )
    else:
        summary = f"verified on all {len(outcomes)} targets: " + "; ".join(
            f"{url}: {outcome.summary}" for url, outcome in outcomes.items()
        )
    return Outcome(worst, summary, {"targets": details})

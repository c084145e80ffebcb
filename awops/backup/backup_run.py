"""One run of ``pg-backup``: snapshot, pg_dump to every target, manifests, retention.

The row counts in the manifest and the dump come from one snapshot: a REPEATABLE READ
transaction exports it, counts every table in it (and reads ActingWeb's Alembic revision and
which of its tables exist) and stays open while ``pg_dump --snapshot`` reads the same data.
The cluster's roles follow (``pg_dumpall --globals-only``, see
:mod:`awops.backup.globals_dump`) and the guards of :mod:`awops.backup.guards` judge the dump
against the previous good backup before the manifest records it. The statement that exports
the snapshot reads the server's clock: the backup is named and dated by it, and retention ages
backups by it, so a host clock that is off names nothing wrongly. The dump is written first,
the roles next, the manifest last; a failure removes what was written, so a target never
holds something that looks like a backup and is not one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from awops.backup.actingweb import read_actingweb_state
from awops.backup.backup_metrics import BackupGauges
from awops.backup.catalog import Catalog, ServerClock, read_catalog
from awops.backup.dump import (
    DumpError,
    PgDump,
    Sink,
    StreamResult,
    check_client_version,
    client_environment,
    client_version,
    resolve_program,
)
from awops.backup.encryption import AgeEncryptor, parse_recipient
from awops.backup.globals_dump import GlobalsDump, dump_globals, pg_dumpall_program, skipped
from awops.backup.guards import guard_problems, previous_good
from awops.backup.manifest import Encryption, Manifest, iso_utc
from awops.backup.names import backup_id, dump_name, manifest_name
from awops.backup.retention import RetentionPolicy
from awops.backup.rows import count_table_rows
from awops.backup.targets import Target, configured_targets
from awops.errors import JobError, first_line
from awops.result import Outcome

if TYPE_CHECKING:
    from awops.backup.options import PgBackupOptions
    from awops.context import JobContext

logger = logging.getLogger(__name__)


@dataclass
class _Snapshot:
    snapshot: str
    server_version: str
    server_version_num: int
    server_time: float  # the server's clock in the statement that took the snapshot


class BackupRun:
    """One run of ``pg-backup``: dump to every target, write manifests, apply retention."""

    def __init__(self, context: JobContext, options: PgBackupOptions) -> None:
        self.context = context
        self.options = options
        self._failed_targets: dict[str, str] = {}

    def run(self) -> Outcome:
        config = self.context.config
        if not config.backup.targets:
            raise JobError("no backup target: set [backup] targets or AWOPS_BACKUP_TARGET")
        targets = configured_targets(config.backup, self.context.aws)
        database = self.context.pg.settings.dbname
        if self.context.dry_run:
            return self._dry_run(targets, database)
        return self._backup(targets, database)

    def _dry_run(self, targets: list[Target], database: str) -> Outcome:
        with self.context.pg.connection() as conn:
            now = ServerClock.read(conn).now()
        would_delete = {}
        catalogs = []
        for target in targets:
            try:
                catalog = read_catalog(target, database, now)
            except JobError as exc:
                self._failed_targets[target.url] = str(exc)
                continue
            catalogs.append(catalog)
            plan = catalog.kept_by(RetentionPolicy.of(self.options), now)
            would_delete[target.url] = [d.backup for d in catalog.good if not plan[d.backup]]
        count = sum(len(names) for names in would_delete.values())
        summary = f"dry run: no dump taken; retention would delete {count} backup(s)"
        details = _catalog_details(catalogs)
        if self._failed_targets:
            return Outcome.error(
                f"{summary}; cannot read {self._failures()}",
                dry_run=True,
                would_delete=would_delete,
                failed_targets=dict(self._failed_targets),
                **details,
            )
        future = [c.future_message(now) for c in catalogs if c.future]
        if future:
            return Outcome.problem(
                f"{summary}; {'; '.join(future)}",
                dry_run=True,
                would_delete=would_delete,
                **details,
            )
        return Outcome.ok(summary, dry_run=True, would_delete=would_delete, **details)

    def _backup(self, targets: list[Target], database: str) -> Outcome:
        started = self.context.clock()
        started_monotonic = time.monotonic()
        program = resolve_program(self.options.pg_dump)
        client_major, client_text = client_version(program)
        recipients = self.options.recipients
        encryptor = AgeEncryptor([parse_recipient(r) for r in recipients]) if recipients else None

        with self.context.pg.dedicated_connection(autocommit=False) as conn:
            snapshot = self._export_snapshot(conn)
            clock = ServerClock(snapshot.server_time)
            backup = backup_id(database, snapshot.server_time)
            dump_file = dump_name(backup, encrypted=encryptor is not None)
            check_client_version(program, client_major, snapshot.server_version_num)
            sinks = self._open_sinks(targets, database, dump_file, clock.now())
            if not sinks:
                return Outcome.error(
                    f"no backup target could be opened: {self._failures()}",
                    targets=[],
                    failed_targets=dict(self._failed_targets),
                    dry_run=False,
                )
            try:
                dump = PgDump(
                    self._pg_dump_command(program, snapshot.snapshot),
                    client_environment(self.context.pg.libpq_environment()),
                )
            except BaseException:
                for sink in sinks:
                    sink.writer.abort()
                raise
            self.context.on_cancel(dump.kill)
            self.context.on_cancel(conn.cancel)
            counts: dict[str, Any] = {}
            counter = threading.Thread(
                target=self._count_rows, args=(conn, counts), name="awops-backup-count"
            )
            counter.start()
            result: StreamResult | None = None
            try:
                try:
                    result = dump.stream(sinks, encryptor, self.context.should_stop)
                finally:
                    failure = self._dump_failure(result)
                    if failure is not None:
                        conn.cancel()  # a count still running has no dump to describe
                    counter.join()
                    conn.rollback()
            except BaseException:
                # The snapshot's session or the stream broke (a server restart): nothing of
                # this run may remain, not even a *.partial.
                for sink in sinks:
                    sink.writer.abort()
                raise
            if failure is None and "error" in counts:
                failure = f"counting rows in the snapshot failed: {counts['error']}"
            if failure is not None:
                for sink in sinks:
                    sink.fail(failure)
                raise DumpError(failure)

        try:
            roles = self._dump_globals(program, database, backup)
        except BaseException:
            for sink in sinks:
                sink.writer.abort()
            raise
        finished = self.context.clock()
        actingweb = counts["actingweb"]
        manifest = Manifest(
            backup=backup,
            database=database,
            server_version=snapshot.server_version,
            pg_dump_version=client_text,
            started_at=iso_utc(started),
            finished_at=iso_utc(finished),
            dump_file=dump_file,
            size_bytes=result.size_bytes,
            sha256=result.sha256,
            table_rows=counts["rows"],
            snapshot=snapshot.snapshot,
            snapshot_time=iso_utc(snapshot.server_time),
            encryption=Encryption("age", list(recipients)) if recipients else Encryption(),
            alembic_revision=actingweb.alembic_revision,
            actingweb_tables=actingweb.tables,
            actingweb_schema=actingweb.schema,
            globals=roles.globals,
        )
        duration = time.monotonic() - started_monotonic
        return self._finish(targets, sinks, manifest, roles, duration, clock)

    def _export_snapshot(self, conn: Any) -> _Snapshot:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute(
            "SELECT pg_export_snapshot(), current_setting('server_version'), "
            "current_setting('server_version_num')::int, statement_timestamp()"
        ).fetchone()
        return _Snapshot(row[0], row[1], row[2], row[3].timestamp())

    def _count_rows(self, conn: Any, out: dict[str, Any]) -> None:
        try:
            out["rows"] = count_table_rows(conn)
            schema = self.context.pg.settings.search_schema
            out["actingweb"] = read_actingweb_state(conn, schema)
        except Exception as exc:
            out["error"] = first_line(exc)

    def _dump_globals(self, pg_dump: str, database: str, backup: str) -> GlobalsDump:
        if not self.options.dump_globals:
            return skipped("dump_globals = false")
        recipients = self.options.recipients
        encryptor = AgeEncryptor([parse_recipient(r) for r in recipients]) if recipients else None
        roles = dump_globals(
            pg_dumpall_program(pg_dump),
            database,
            self.context.pg.libpq_environment(),
            self.context.on_cancel,
            backup,
            encryptor,
        )
        self.context.raise_if_stopping()
        return roles

    def _pg_dump_command(self, program: str, snapshot: str) -> list[str]:
        command = [program, "--format=custom", "--no-password", f"--snapshot={snapshot}"]
        if self.options.compress_level >= 0:
            command.append(f"--compress={self.options.compress_level}")
        if self.options.lock_wait_timeout_seconds > 0:
            command.append(f"--lock-wait-timeout={self.options.lock_wait_timeout_seconds}s")
        return command

    def _open_sinks(
        self, targets: list[Target], database: str, dump_file: str, server_now: float
    ) -> list[Sink]:
        sinks = []
        for target in targets:
            try:
                target.prepare(database)
                target.remove_orphaned_dumps(database, server_now)
                sinks.append(Sink(target.url, target.open_writer(dump_file)))
            except JobError as exc:
                logger.error("backup target %s unusable: %s", target.url, exc)
                self._failed_targets[target.url] = str(exc)
        return sinks

    @staticmethod
    def _dump_failure(result: StreamResult | None) -> str | None:
        if result is None:
            return "streaming the dump failed"
        if result.sinks and all(sink.failed for sink in result.sinks):
            return "every target failed: " + "; ".join(
                f"{sink.label}: {sink.error}" for sink in result.sinks
            )
        if result.stopped:
            return "pg_dump was stopped (timeout or shutdown); nothing kept"
        if result.returncode != 0:
            return f"pg_dump failed (exit {result.returncode}): {result.stderr or 'no message'}"
        return None

    def _finish(
        self,
        targets: list[Target],
        sinks: list[Sink],
        manifest: Manifest,
        roles: GlobalsDump,
        duration: float,
        clock: ServerClock,
    ) -> Outcome:
        by_url = {target.url: target for target in targets}
        manifest.problems = guard_problems(
            manifest,
            previous_good([by_url[s.label] for s in sinks if not s.failed], manifest, clock.now()),
            self.options.min_size_bytes,
            self.options.max_row_drop_ratio,
        )
        gauges = BackupGauges(self.context.metrics)
        written, deleted, catalogs = [], {}, []
        for sink in sinks:
            if sink.failed:
                self._failed_targets[sink.label] = sink.error
                continue
            target = by_url[sink.label]
            try:
                sink.writer.commit()
                if roles.globals.saved:
                    target.write_small(roles.globals.file, roles.data)
                target.write_small(manifest_name(manifest.backup), manifest.to_json())
            except JobError as exc:
                sink.fail(str(exc))
                self._failed_targets[sink.label] = sink.error
                if roles.globals.saved:
                    _delete_quietly(target, roles.globals.file)
                continue
            labels = {"backend": "postgresql", "target": target.url}
            # The server's clock, as the backup's date: a host clock a year fast would keep
            # the backup-age alert quiet for a year.
            gauges.last_success.labels(**labels).set(clock.now())
            gauges.size.labels(**labels).set(manifest.size_bytes)
            gauges.duration.labels(**labels).set(duration)
            gauges.globals_saved.labels(**labels).set(1 if roles.globals.saved else 0)
            written.append(target.url)
            try:
                catalog = read_catalog(target, manifest.database, clock.now())
                deleted[target.url] = self._apply_retention(target, catalog, manifest, clock)
            except JobError as exc:
                self._failed_targets[target.url] = f"retention failed: {exc}"
                continue
            catalogs.append(catalog)
            gauges.deleted.labels(**labels).inc(len(deleted[target.url]))
            gauges.stored.labels(**labels).set(catalog.stored_count - len(deleted[target.url]))
            gauges.future.labels(**labels).set(len(catalog.future))
            gauges.unreadable.labels(**labels).set(len(catalog.unreadable))

        details = {
            "backup": manifest.backup,
            "created": manifest.snapshot_time,
            "size_bytes": manifest.size_bytes,
            "sha256": manifest.sha256,
            "tables": len(manifest.table_rows),
            "rows": sum(manifest.table_rows.values()),
            "alembic_revision": manifest.alembic_revision,
            "globals": {"status": manifest.globals.status, "reason": manifest.globals.reason},
            "duration_seconds": round(duration, 3),
            "encrypted": manifest.encrypted,
            "targets": written,
            "retention_deleted": deleted,
            "dry_run": False,
            **_catalog_details(catalogs),
        }
        if manifest.problems:
            details["problems"] = list(manifest.problems)
        summary = (
            f"backup {manifest.backup}: {manifest.size_bytes} bytes, "
            f"{details['rows']} rows in {details['tables']} tables, to "
            f"{', '.join(written) or 'no target'}"
        )
        if self._failed_targets:
            # Each target's own result: what was written where, and why each other failed.
            details["failed_targets"] = dict(self._failed_targets)
            return Outcome.error(f"{summary}; failed on {self._failures()}", **details)
        if not manifest.globals.saved:
            summary += f"; roles not saved ({first_line(manifest.globals.reason)})"
        trouble = list(manifest.problems)
        trouble += [c.future_message(clock.now()) for c in catalogs if c.future]
        if trouble:
            return Outcome.problem(f"{summary}; but {'; '.join(trouble)}", **details)
        return Outcome.ok(summary, **details)

    def _failures(self) -> str:
        return "; ".join(f"{url}: {error}" for url, error in self._failed_targets.items())

    def _apply_retention(
        self, target: Target, catalog: Catalog, manifest: Manifest, clock: ServerClock
    ) -> list[str]:
        """Delete what the policy lets go of the catalogue's good backups; never this run's
        backup, a pinned or flagged one, nor one dated in the future or whose manifest
        cannot be read."""
        plan = catalog.kept_by(RetentionPolicy.of(self.options), clock.now())
        doomed = []
        for dated in catalog.good:
            if plan[dated.backup] or dated.backup == manifest.backup:
                continue
            logger.info("retention: deleting %s from %s", dated.backup, target.url)
            target.delete_backup(dated.stored)
            doomed.append(dated.backup)
        return sorted(doomed)


def _delete_quietly(target: Target, name: str) -> None:
    try:
        target.delete(name)
    except JobError as exc:
        logger.error("could not remove %s from %s: %s", name, target.url, exc)


def _catalog_details(catalogs: list[Catalog]) -> dict[str, Any]:
    """What the outcome's details say of backups that retention did not count."""
    details: dict[str, Any] = {}
    future = {c.target: [d.describe() for d in c.future] for c in catalogs if c.future}
    unreadable = {c.target: list(c.unreadable) for c in catalogs if c.unreadable}
    if future:
        details["future_backups"] = future
    if unreadable:
        details["unreadable_manifests"] = unreadable
    return details

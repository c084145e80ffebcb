"""One run of ``pg-backup``: snapshot, pg_dump to every target, manifests, retention.

The row counts in the manifest and the dump come from one snapshot: a REPEATABLE READ
transaction exports it, counts every table in it and stays open while ``pg_dump --snapshot``
reads the same data. The dump is written first, the manifest last; a failure removes what was
written, so a target never holds something that looks like a backup and is not one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from awops.backup.manifest import (
    Encryption,
    Manifest,
    backup_id,
    dump_name,
    iso_utc,
    manifest_name,
)
from awops.backup.retention import RetentionPolicy, backups_to_delete
from awops.backup.rows import count_table_rows
from awops.backup.targets import Target, configured_targets
from awops.errors import JobError
from awops.result import Outcome

if TYPE_CHECKING:
    from awops.context import JobContext
    from awops.jobs.pg_backup import PgBackupOptions

logger = logging.getLogger(__name__)

BACKUP_LABELS = ("backend", "target")


def policy(options: PgBackupOptions) -> RetentionPolicy:
    return RetentionPolicy(
        keep_last=options.keep_last,
        keep_daily=options.keep_daily,
        keep_weekly=options.keep_weekly,
        keep_monthly=options.keep_monthly,
        max_age_days=options.max_age_days,
    )


@dataclass
class _Snapshot:
    snapshot: str
    server_version: str
    server_version_num: int


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
        now = self.context.clock()
        would_delete = {}
        for target in targets:
            backups = target.list_backups(database)
            would_delete[target.url] = backups_to_delete(
                [(b.backup, b.started) for b in backups], policy(self.options), now
            )
        count = sum(len(names) for names in would_delete.values())
        return Outcome.ok(
            f"dry run: no dump taken; retention would delete {count} backup(s)",
            dry_run=True,
            would_delete=would_delete,
        )

    def _backup(self, targets: list[Target], database: str) -> Outcome:
        started = self.context.clock()
        started_monotonic = time.monotonic()
        program = resolve_program(self.options.pg_dump)
        client_major, client_text = client_version(program)
        recipients = self.options.recipients
        encryptor = AgeEncryptor([parse_recipient(r) for r in recipients]) if recipients else None
        backup = backup_id(database, started)
        dump_file = dump_name(backup, encrypted=encryptor is not None)

        with self.context.pg.dedicated_connection(autocommit=False) as conn:
            snapshot = self._export_snapshot(conn)
            check_client_version(program, client_major, snapshot.server_version_num)
            sinks = self._open_sinks(targets, database, dump_file)
            if not sinks:
                raise JobError("no backup target could be opened")
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
                    result = dump.stream(sinks, encryptor, self.context.stop_event.is_set)
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

        finished = self.context.clock()
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
            encryption=Encryption("age", list(recipients)) if recipients else Encryption(),
        )
        duration = time.monotonic() - started_monotonic
        return self._finish(targets, sinks, manifest, duration)

    def _export_snapshot(self, conn: Any) -> _Snapshot:
        import psycopg

        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute(
            "SELECT pg_export_snapshot(), current_setting('server_version'), "
            "current_setting('server_version_num')::int"
        ).fetchone()
        return _Snapshot(row[0], row[1], row[2])

    def _count_rows(self, conn: Any, out: dict[str, Any]) -> None:
        try:
            out["rows"] = count_table_rows(conn)
        except Exception as exc:
            out["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)

    def _pg_dump_command(self, program: str, snapshot: str) -> list[str]:
        command = [program, "--format=custom", "--no-password", f"--snapshot={snapshot}"]
        if self.options.compress_level >= 0:
            command.append(f"--compress={self.options.compress_level}")
        if self.options.lock_wait_timeout_seconds > 0:
            command.append(f"--lock-wait-timeout={self.options.lock_wait_timeout_seconds}s")
        return command

    def _open_sinks(self, targets: list[Target], database: str, dump_file: str) -> list[Sink]:
        sinks = []
        for target in targets:
            try:
                target.prepare(database)
                target.remove_orphaned_dumps(database, self.context.clock())
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
        self, targets: list[Target], sinks: list[Sink], manifest: Manifest, duration: float
    ) -> Outcome:
        by_url = {target.url: target for target in targets}
        metrics = self.context.metrics
        last_success = metrics.gauge(
            "awops_backup_last_success_timestamp_seconds",
            "When the last complete backup (dump and manifest) was written",
            BACKUP_LABELS,
        )
        size = metrics.gauge(
            "awops_backup_size_bytes", "Size of the last complete backup's dump", BACKUP_LABELS
        )
        duration_gauge = metrics.gauge(
            "awops_backup_duration_seconds", "Wall time of the last complete backup", BACKUP_LABELS
        )
        stored = metrics.gauge(
            "awops_backup_stored_backups",
            "Complete backups on the target after retention",
            BACKUP_LABELS,
        )
        deleted_total = metrics.counter(
            "awops_backup_retention_deleted_total", "Backups deleted by retention", BACKUP_LABELS
        )
        written, deleted = [], {}
        for sink in sinks:
            if sink.failed:
                self._failed_targets[sink.label] = sink.error
                continue
            target = by_url[sink.label]
            try:
                sink.writer.commit()
                target.write_small(manifest_name(manifest.backup), manifest.to_json())
            except JobError as exc:
                sink.fail(str(exc))
                self._failed_targets[sink.label] = sink.error
                continue
            labels = {"backend": "postgresql", "target": target.url}
            last_success.labels(**labels).set(self.context.clock())
            size.labels(**labels).set(manifest.size_bytes)
            duration_gauge.labels(**labels).set(duration)
            written.append(target.url)
            try:
                deleted[target.url], remaining = self._apply_retention(target, manifest.database)
            except JobError as exc:
                self._failed_targets[target.url] = f"retention failed: {exc}"
                continue
            deleted_total.labels(**labels).inc(len(deleted[target.url]))
            stored.labels(**labels).set(remaining)

        details = {
            "backup": manifest.backup,
            "size_bytes": manifest.size_bytes,
            "sha256": manifest.sha256,
            "tables": len(manifest.table_rows),
            "rows": sum(manifest.table_rows.values()),
            "duration_seconds": round(duration, 3),
            "encrypted": manifest.encrypted,
            "targets": written,
            "retention_deleted": deleted,
            "dry_run": False,
        }
        if self._failed_targets:
            details["failed_targets"] = dict(self._failed_targets)
            failed = ", ".join(f"{url}: {error}" for url, error in self._failed_targets.items())
            return Outcome.error(f"backup {manifest.backup} failed on {failed}", **details)
        return Outcome.ok(
            f"backup {manifest.backup}: {manifest.size_bytes} bytes, "
            f"{details['rows']} rows in {details['tables']} tables, to {', '.join(written)}",
            **details,
        )

    def _apply_retention(self, target: Target, database: str) -> tuple[list[str], int]:
        backups = target.list_backups(database)
        doomed = set(
            backups_to_delete(
                [(b.backup, b.started) for b in backups],
                policy(self.options),
                self.context.clock(),
            )
        )
        for stored in backups:
            if stored.backup in doomed:
                logger.info("retention: deleting %s from %s", stored.backup, target.url)
                target.delete_backup(stored)
        return sorted(doomed), len(backups) - len(doomed)

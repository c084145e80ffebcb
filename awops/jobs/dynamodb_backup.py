"""``dynamodb-backup``: an on-demand backup of each table, with retention by count and age.

Backups are named ``awops-<table>-<UTC timestamp>``; retention only ever deletes USER backups
with exactly that name shape, so backups made by people, AWS Backup or other tools are safe,
and it never deletes the backup this run made. Pinned backups (``awops backups pin``, kept in
the DynamoDB lock table, see :mod:`awops.dynamodb_restore.pins`) are never deleted and do not
count towards ``retention_count``; when the pins cannot be read, nothing is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from awops import dynamodb
from awops.abc import Job
from awops.aws import epoch
from awops.dynamodb_restore.backup_names import backup_name, is_awops_backup
from awops.errors import JobError
from awops.metrics import catalogue
from awops.registry import register
from awops.result import Outcome
from awops.settings import dynamodb_name_list, setting

logger = logging.getLogger(__name__)


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class DynamoDBBackupOptions:
    tables: list[str] = setting(
        [], check=dynamodb_name_list, doc="table suffixes to back up; empty = every expected table"
    )
    retention_count: int = setting(
        7, minimum=0, doc="keep at most this many awops backups per table; 0 = no count limit"
    )
    retention_days: float = setting(
        35.0, minimum=0, doc="delete awops backups older than this; 0 = no age limit"
    )


@register
class DynamoDBBackup(Job[DynamoDBBackupOptions]):
    name = "dynamodb-backup"
    backend = "dynamodb"
    description = "CreateBackup per table (awops-<table>-<timestamp>), retention by count and age"
    default_schedule = "0 3 * * *"
    default_enabled = False
    default_timeout_seconds = 1800.0
    changes_data = True
    Options = DynamoDBBackupOptions

    def _run(self) -> Outcome:
        settings = self.context.config.dynamodb
        client = self.context.aws.dynamodb()
        metrics = self.context.metrics
        last_success = metrics.series(catalogue.BACKUP_LAST_SUCCESS)
        size_gauge = metrics.series(catalogue.BACKUP_SIZE)
        kept_gauge = metrics.series(catalogue.DYNAMODB_BACKUPS)
        now = self.context.clock()
        stamp = dynamodb.utc_stamp(now)
        dry_run = self.context.dry_run
        created: dict[str, Any] = {}
        deleted: dict[str, list[str]] = {}
        pinned_kept: dict[str, list[str]] = {}
        failures: list[str] = []
        retention_failures: list[str] = []
        pins = self._pins(client, retention_failures)
        for table in dynamodb.table_names(settings, self.options.tables):
            self.context.raise_if_stopping()
            name = backup_name(table, stamp)
            existing = self._awops_backups(client, table)
            if pins is not None:
                pinned_kept[table] = [b["BackupName"] for b in existing if b["BackupArn"] in pins]
                existing = [b for b in existing if b["BackupArn"] not in pins]
            if dry_run:
                created[table] = {"backup": name, "would_create": True}
                doomed = self._expired(existing, now, keep=None, extra_new=1)
                deleted[table] = [b["BackupName"] for b in doomed] if pins is not None else []
                continue
            answer = self._create_backup(client, table, name)
            if answer is None:
                failures.append(f"{table} is missing")
                continue
            backup = answer["BackupDetails"]
            size = backup.get("BackupSizeBytes")
            created[table] = {
                "backup": name,
                "arn": backup["BackupArn"],
                "status": backup.get("BackupStatus"),
                "size_bytes": size,
            }
            last_success.labels(backend="dynamodb", target=table).set(now)
            if size is not None:
                size_gauge.labels(backend="dynamodb", target=table).set(size)
            doomed = self._expired(existing, now, keep=backup["BackupArn"], extra_new=1)
            if pins is None:
                doomed = []  # which backups are pinned is unknown: delete none
            for old in doomed:
                with dynamodb.translated_errors(client, f"DeleteBackup {old['BackupName']}"):
                    client.delete_backup(BackupArn=old["BackupArn"])
                logger.info("deleted old backup %s of %s", old["BackupName"], table)
            deleted[table] = [b["BackupName"] for b in doomed]
            kept = len(existing) + len(pinned_kept.get(table, [])) + 1 - len(doomed)
            kept_gauge.labels(table=table).set(kept)

        removed = sum(len(names) for names in deleted.values())
        details = {
            "created": created,
            "deleted": deleted,
            "pinned": pinned_kept,
            "dry_run": dry_run,
        }
        verb = "would create" if dry_run else "created"
        removed_verb = "would delete" if dry_run else "deleted"
        summary = (
            f"{verb} {len(created)} backup{'s' if len(created) != 1 else ''} ({stamp}), "
            f"{removed_verb} {removed} old"
        )
        if failures or retention_failures:
            parts = [f"backup failed: {'; '.join(failures)}"] if failures else []
            parts += [*retention_failures, summary]
            return Outcome.error("; ".join(parts), **details)
        return Outcome.ok(summary, **details)

    def _pins(self, client: Any, failures: list[str]) -> set[str] | None:
        """ARNs of pinned backups; None (and a failure) when the pins cannot be read."""
        from awops.dynamodb_restore.pins import BackupPins, pin_table_name

        config = self.context.config
        try:
            return set(BackupPins(client, pin_table_name(config), False).pinned())
        except JobError as exc:
            failures.append(f"retention skipped, the backup pins cannot be read: {exc}")
            return None

    def _create_backup(self, client: Any, table: str, name: str) -> dict[str, Any] | None:
        """CreateBackup's answer, or None when the table does not exist."""
        from botocore.exceptions import ClientError

        with dynamodb.translated_errors(client, f"CreateBackup {table}"):
            try:
                answer: dict[str, Any] = client.create_backup(TableName=table, BackupName=name)
            except ClientError as exc:
                if dynamodb.error_code(exc) in (
                    "TableNotFoundException",
                    "ResourceNotFoundException",
                ):
                    return None
                raise
        return answer

    def _awops_backups(self, client: Any, table: str) -> list[dict[str, Any]]:
        """awops' USER backups of ``table``, newest first."""
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": table, "BackupType": "USER"}
        with dynamodb.translated_errors(client, f"ListBackups {table}"):
            while True:
                page = client.list_backups(**request)
                found += [b for b in page.get("BackupSummaries", []) if is_awops_backup(table, b)]
                if not page.get("LastEvaluatedBackupArn"):
                    break
                request["ExclusiveStartBackupArn"] = page["LastEvaluatedBackupArn"]
        found = [b for b in found if b.get("BackupStatus") != "DELETED"]
        found.sort(key=lambda b: epoch(b.get("BackupCreationDateTime")) or 0, reverse=True)
        return found

    def _expired(
        self, existing: list[dict[str, Any]], now: float, keep: str | None, extra_new: int
    ) -> list[dict[str, Any]]:
        """Backups beyond ``retention_count`` (counting the new one) or older than the age."""
        count, days = self.options.retention_count, self.options.retention_days
        doomed = []
        for position, backup in enumerate(existing, start=extra_new):
            if backup.get("BackupArn") == keep:
                continue
            created = epoch(backup.get("BackupCreationDateTime")) or now
            too_many = count > 0 and position >= count
            too_old = days > 0 and now - created > days * 86400
            if too_many or too_old:
                doomed.append(backup)
        return doomed

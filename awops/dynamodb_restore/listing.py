"""Restore points of a DynamoDB deployment: each table's PITR window and its on-demand backups.

Entries share the shape of ``awops backups list --json``'s PostgreSQL ones where a field
applies (``id``, ``backend``, ``target``, ``created``, ``size_bytes``, ``pinned``,
``complete``) and add DynamoDB's own. ``kind`` is ``pitr`` (a table's restore window; ``id``
``pitr:<table>``, ``created`` its latest restorable time) or ``backup`` (``id`` the backup's
ARN). Backups of every kind are listed (awops', people's, AWS Backup's, the SYSTEM backups
AWS keeps of deleted tables); ``awops`` says which are awops' own.
"""

from __future__ import annotations

from typing import Any

from awops.dynamodb import expected_tables, translated_errors
from awops.dynamodb_restore._aws import describe_table_or_none, epoch_or_none, iso
from awops.dynamodb_restore.backup_names import is_awops_backup


def _iso_or_none(value: Any) -> str | None:
    epoch = epoch_or_none(value)
    return iso(epoch) if epoch is not None else None


def pitr_entry(client: Any, table: str) -> dict[str, Any]:
    """The restore window of ``table``; ``pitr`` is ENABLED, DISABLED or TABLE_MISSING."""
    entry: dict[str, Any] = {
        "id": f"pitr:{table}",
        "backend": "dynamodb",
        "kind": "pitr",
        "target": table,
        "created": None,
        "earliest_restorable": None,
        "latest_restorable": None,
        "recovery_period_days": None,
        "size_bytes": None,
        "pinned": False,
        "complete": False,
        "awops": False,
    }
    description = describe_table_or_none(client, table)
    if description is None:
        entry["pitr"] = "TABLE_MISSING"
        return entry
    entry["size_bytes"] = description.get("TableSizeBytes")
    with translated_errors(client, f"DescribeContinuousBackups {table}"):
        answer = client.describe_continuous_backups(TableName=table)
    pitr = answer["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription") or {}
    entry["pitr"] = pitr.get("PointInTimeRecoveryStatus", "DISABLED")
    if entry["pitr"] == "ENABLED":
        entry["earliest_restorable"] = _iso_or_none(pitr.get("EarliestRestorableDateTime"))
        entry["latest_restorable"] = _iso_or_none(pitr.get("LatestRestorableDateTime"))
        entry["created"] = entry["latest_restorable"]
        entry["recovery_period_days"] = pitr.get("RecoveryPeriodInDays")
        entry["complete"] = entry["latest_restorable"] is not None
    return entry


def backup_entries(client: Any, table: str, pinned: set[str] | None) -> list[dict[str, Any]]:
    """Every on-demand backup of ``table`` (the table may be gone); ``pinned`` None: unknown."""
    entries = []
    request: dict[str, Any] = {"TableName": table, "BackupType": "ALL"}
    with translated_errors(client, f"ListBackups {table}"):
        while True:
            page = client.list_backups(**request)
            for backup in page.get("BackupSummaries", []):
                if backup.get("BackupStatus") == "DELETED":
                    continue
                arn = backup["BackupArn"]
                entries.append(
                    {
                        "id": arn,
                        "backend": "dynamodb",
                        "kind": "backup",
                        "name": backup.get("BackupName", ""),
                        "target": table,
                        "created": _iso_or_none(backup.get("BackupCreationDateTime")),
                        "size_bytes": backup.get("BackupSizeBytes"),
                        "type": backup.get("BackupType", ""),
                        "status": backup.get("BackupStatus", ""),
                        "expires": _iso_or_none(backup.get("BackupExpiryDateTime")),
                        "awops": is_awops_backup(table, backup),
                        "pinned": None if pinned is None else arn in pinned,
                        "complete": backup.get("BackupStatus") == "AVAILABLE",
                    }
                )
            if not page.get("LastEvaluatedBackupArn"):
                break
            request["ExclusiveStartBackupArn"] = page["LastEvaluatedBackupArn"]
    return entries


def list_restore_points(
    client: Any, settings: Any, pinned: set[str] | None, tables: list[str] | None = None
) -> list[dict[str, Any]]:
    """Each expected table's PITR window (in the expected order), then every backup of those
    tables, newest first. ``tables`` limits the listing to those suffixes."""
    names = [
        table.name for table in expected_tables(settings) if not tables or table.suffix in tables
    ]
    windows = [pitr_entry(client, name) for name in names]
    backups = [entry for name in names for entry in backup_entries(client, name, pinned)]
    backups.sort(key=lambda entry: entry["created"] or "", reverse=True)
    return windows + backups

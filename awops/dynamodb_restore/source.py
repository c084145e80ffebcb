"""DynamoDB's :class:`~awops.backup.listing.BackupSource`: restore windows and backups, pins.

``awops backups list`` shows each expected table's point-in-time window and every on-demand
backup of those tables (awops', people's, AWS Backup's); ``pin`` / ``unpin`` take an awops
backup's ARN or name. The entries keep every DynamoDB field of
:mod:`awops.dynamodb_restore.listing` in their JSON.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from awops.backup.listing import BackupSource, ListedBackup, Listing, PinResult
from awops.dynamodb_restore.backups import (
    format_dynamodb_backups,
    is_dynamodb_backup_id,
    list_dynamodb_backups,
    pin_dynamodb_backup,
    unpin_dynamodb_backup,
)
from awops.errors import AwopsError

logger = logging.getLogger(__name__)


class DynamoDBBackupSource(BackupSource):
    backend = "dynamodb"

    def usage_problem(self, target: str | None) -> str | None:
        if target:
            return "--target names a pg-backup target; DynamoDB backups live with their tables"
        if "dynamodb" not in self.config.backends:
            return "the dynamodb backend is not configured (AWOPS_BACKENDS or DATABASE_BACKEND)"
        return None

    def backup_id_problem(self, backup: str) -> str | None:
        if is_dynamodb_backup_id(self.config, backup):
            return None
        prefix = self.config.dynamodb.prefix
        return (
            f"{backup!r} is not a DynamoDB backup: expected a backup ARN or an awops backup "
            f"name awops-{prefix}_<table>-<stamp>, as awops backups list shows them"
        )

    def list_backups(self, target: str | None) -> Listing:
        listing = Listing()
        try:
            entries = list_dynamodb_backups(self.config, self.resources.aws)
        except AwopsError as exc:
            listing.failed_targets[f"dynamodb:{self.config.dynamodb.prefix}"] = str(exc)
            return listing
        listing.backups = [_listed(entry) for entry in entries]
        return listing

    def pin(self, backup: str, target: str | None, reason: str) -> PinResult:
        return self._pin_or_unpin(backup, lambda: pin_dynamodb_backup(self.config, backup))

    def unpin(self, backup: str, target: str | None) -> PinResult:
        return self._pin_or_unpin(backup, lambda: unpin_dynamodb_backup(self.config, backup))

    def _pin_or_unpin(self, backup: str, change: Any) -> PinResult:
        result = PinResult()
        try:
            done = change()
        except AwopsError as exc:
            result.failed[backup] = str(exc)
            return result
        where = f"{done['id']} (table {done['table']})" if done["table"] else done["id"]
        (result.done if done["changed"] else result.already).append(where)
        return result

    def people_table(self, backups: list[ListedBackup]) -> str:
        return format_dynamodb_backups([entry.extra for entry in backups])


_DATED_BY = {"pitr": "LatestRestorableDateTime", "backup": "BackupCreationDateTime"}


def _listed(entry: dict[str, Any]) -> ListedBackup:
    created = entry.get("created")
    timestamp = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else 0
    return ListedBackup(
        id=entry["id"],
        backend="dynamodb",
        target=entry["target"],
        database=entry["target"],
        created=created or "",
        created_timestamp=timestamp,
        dated_by="LatestRestorableDateTime"
        if entry["kind"] == "pitr"
        else "BackupCreationDateTime",
        size_bytes=entry.get("size_bytes"),
        pinned=bool(entry.get("pinned")),
        complete=bool(entry.get("complete")),
        kept_by=["pinned"] if entry.get("pinned") else [],
        extra=entry,
    )

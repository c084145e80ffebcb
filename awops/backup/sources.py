"""Which backends ``awops backups`` can list and pin: backend -> "module:class" of its
:class:`~awops.backup.listing.BackupSource`. Kept apart so the CLI reads it without importing
anything else."""

from __future__ import annotations

SOURCES: dict[str, str] = {
    "postgresql": "awops.backup.pg_source:PgBackupSource",
    "dynamodb": "awops.dynamodb_restore.source:DynamoDBBackupSource",
}

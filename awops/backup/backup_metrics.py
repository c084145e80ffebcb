"""The series ``pg-backup`` sets, per target (``backend``, ``target`` labels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from awops.metrics import MetricsBase

BACKUP_LABELS = ("backend", "target")


class BackupGauges:
    """The series a backup run sets, per target."""

    def __init__(self, metrics: MetricsBase) -> None:
        self.last_success = metrics.gauge(
            "awops_backup_last_success_timestamp_seconds",
            "When the last complete backup (dump and manifest) was written",
            BACKUP_LABELS,
        )
        self.size = metrics.gauge(
            "awops_backup_size_bytes", "Size of the last complete backup's dump", BACKUP_LABELS
        )
        self.duration = metrics.gauge(
            "awops_backup_duration_seconds", "Wall time of the last complete backup", BACKUP_LABELS
        )
        self.stored = metrics.gauge(
            "awops_backup_stored_backups",
            "Complete backups on the target after retention",
            BACKUP_LABELS,
        )
        self.deleted = metrics.counter(
            "awops_backup_retention_deleted_total", "Backups deleted by retention", BACKUP_LABELS
        )
        self.future = metrics.gauge(
            "awops_backup_future_dated_backups",
            "Backups dated after the database server's clock: not counted, not deleted",
            BACKUP_LABELS,
        )
        self.globals_saved = metrics.gauge(
            "awops_backup_globals_saved",
            "1 when the last backup saved the cluster's roles, 0 when the server refused",
            BACKUP_LABELS,
        )
        self.unreadable = metrics.gauge(
            "awops_backup_unreadable_manifests",
            "Backups whose manifest cannot be read: not counted, not deleted",
            BACKUP_LABELS,
        )

"""The series ``pg-backup`` sets, per target (``backend``, ``target`` labels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.metrics import MetricsBase


class BackupGauges:
    """The series a backup run sets, per target."""

    def __init__(self, metrics: MetricsBase) -> None:
        self.last_success = metrics.series(catalogue.BACKUP_LAST_SUCCESS)
        self.size = metrics.series(catalogue.BACKUP_SIZE)
        self.duration = metrics.series(catalogue.BACKUP_DURATION)
        self.stored = metrics.series(catalogue.BACKUP_STORED)
        self.deleted = metrics.series(catalogue.BACKUP_RETENTION_DELETED)
        self.future = metrics.series(catalogue.BACKUP_FUTURE_DATED)
        self.globals_saved = metrics.series(catalogue.BACKUP_GLOBALS_SAVED)
        self.unreadable = metrics.series(catalogue.BACKUP_UNREADABLE_MANIFESTS)

"""``pg-backup``: pg_dump in custom format, streamed to every target with a consistent manifest.

The work is in :mod:`awops.backup.backup_run`, imported when the job runs, so listing jobs
and starting ``awops`` stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awops.abc import Job
from awops.backup.options import PgBackupOptions
from awops.registry import register
from awops.result import Outcome, Status

if TYPE_CHECKING:
    from awops.config import Config


@register
class PgBackup(Job[PgBackupOptions]):
    name = "pg-backup"
    backend = "postgresql"
    description = "pg_dump with a manifest to a local directory and/or S3, then retention"
    default_schedule = "0 3 * * *"
    default_timeout_seconds = 6 * 3600.0
    changes_data = True
    Options = PgBackupOptions
    # Enabled by default: an operator who has not said where backups go hears it every run.
    unconfigured_status = Status.ERROR
    configure_hint = (
        "set [backup] targets or AWOPS_BACKUP_TARGET, or [jobs.pg-backup] enabled = false"
    )

    @classmethod
    def unconfigured_reason(cls, options: PgBackupOptions, config: Config) -> str | None:
        return None if config.backup.targets else "no backup target"

    def _run(self) -> Outcome:
        # The job's boundary: its library (and psycopg) is imported when it runs, not when
        # the job is listed or its options are validated.
        from awops.backup.backup_run import BackupRun

        return BackupRun(self.context, self.options).run()

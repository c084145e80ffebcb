"""``pg-backup``: pg_dump in custom format, streamed to every target with a consistent manifest.

The work is in :mod:`awops.backup.backup_run`, imported when the job runs, so listing jobs
and starting ``awops`` stay cheap.
"""

from __future__ import annotations

from awops.abc import Job
from awops.backup.options import PgBackupOptions
from awops.registry import register
from awops.result import Outcome


@register
class PgBackup(Job):
    name = "pg-backup"
    backend = "postgresql"
    description = "pg_dump with a manifest to a local directory and/or S3, then retention"
    default_schedule = "0 3 * * *"
    default_timeout_seconds = 6 * 3600.0
    changes_data = True
    Options = PgBackupOptions

    def _run(self) -> Outcome:
        from awops.backup.backup_run import BackupRun

        return BackupRun(self.context, self.options).run()

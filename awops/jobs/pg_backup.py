"""``pg-backup``: pg_dump in custom format, streamed to every target with a consistent manifest.

The work is in :mod:`awops.backup.backup_run`, imported when the job runs, so listing jobs
and starting ``awops`` stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from awops.abc import Job
from awops.registry import register
from awops.result import Outcome
from awops.settings import MAX_PG_TIMEOUT_SECONDS, setting


def _recipients(value: list[str]) -> str | None:
    from awops.backup.encryption import check_recipient

    for recipient in value:
        expected = check_recipient(recipient)
        if expected is not None:
            return expected
    return None


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class PgBackupOptions:
    pg_dump: str = setting(
        "pg_dump", doc="pg_dump program or path; its major version must be >= the server's"
    )
    compress_level: int = setting(
        -1, minimum=-1, maximum=9, doc="pg_dump -Z level; -1 = pg_dump's default"
    )
    lock_wait_timeout_seconds: int = setting(
        600,
        minimum=0,
        maximum=MAX_PG_TIMEOUT_SECONDS,
        doc="pg_dump --lock-wait-timeout; 0 = wait as long as it takes",
    )
    recipients: list[str] = setting(
        [], check=_recipients, doc="age recipients (age1...); empty = not encrypted"
    )
    keep_last: int = setting(7, minimum=0, doc="retention: the newest N backups")
    keep_daily: int = setting(7, minimum=0, doc="retention: the newest backup of N days")
    keep_weekly: int = setting(4, minimum=0, doc="retention: the newest backup of N ISO weeks")
    keep_monthly: int = setting(6, minimum=0, doc="retention: the newest backup of N months")
    max_age_days: float = setting(
        0.0, minimum=0, doc="retention: delete backups older than this, kept or not; 0 = off"
    )


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

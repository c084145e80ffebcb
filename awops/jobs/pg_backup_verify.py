"""``pg-backup-verify``: proves the newest backup restores and holds what its manifest says.

The work is in :mod:`awops.backup.verify_run`, imported when the job runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awops.abc import Job
from awops.backup.options import PgBackupVerifyOptions
from awops.registry import register
from awops.result import Outcome, Status

if TYPE_CHECKING:
    from awops.config import Config


@register
class PgBackupVerify(Job[PgBackupVerifyOptions]):
    name = "pg-backup-verify"
    backend = "postgresql"
    description = "restores the newest backup into a scratch database and checks row counts"
    default_schedule = "0 5 * * 0"
    default_timeout_seconds = 6 * 3600.0
    changes_data = False
    Options = PgBackupVerifyOptions
    unconfigured_status = Status.ERROR
    configure_hint = (
        "set [backup] targets, AWOPS_BACKUP_TARGET or [jobs.pg-backup-verify] target, "
        "or [jobs.pg-backup-verify] enabled = false"
    )

    @classmethod
    def unconfigured_reason(cls, options: PgBackupVerifyOptions, config: Config) -> str | None:
        return None if options.target or config.backup.targets else "no backup target"

    def _run(self) -> Outcome:
        # The job's boundary: its library (and psycopg) is imported when it runs, not when
        # the job is listed or its options are validated.
        from awops.backup.verify_run import VerifyRun

        return VerifyRun(self.context, self.options).run()

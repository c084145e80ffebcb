"""``pg-backup-verify``: proves the newest backup restores and holds what its manifest says.

The work is in :mod:`awops.backup.verify_run`, imported when the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from awops.abc import Job
from awops.registry import register
from awops.result import Outcome
from awops.settings import setting

ALL_TARGETS = "all"


def _target(value: str) -> str | None:
    parts = urlsplit(value)
    if not value or value == ALL_TARGETS or value.startswith("/"):
        return None
    if parts.scheme == "s3" and parts.netloc:
        return None
    if parts.scheme == "file" and parts.path.startswith("/"):
        return None
    return (
        "a backup target like s3://bucket/prefix, file:///var/backups/awops or /abs/path, or 'all'"
    )


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class PgBackupVerifyOptions:
    target: str = setting(
        "",
        check=_target,
        doc="the backup target to verify; empty = the first of [backup] targets; all = each "
        "of them in turn, a restore each",
    )
    pg_restore: str = setting("pg_restore", doc="pg_restore program or path")
    restore_jobs: int = setting(2, minimum=1, maximum=64, doc="pg_restore --jobs")
    identity_file: str = setting("", doc="age identity file for encrypted backups")
    work_dir: str = setting(
        "", doc="where S3 or encrypted dumps are staged for pg_restore; empty = system temp"
    )
    verify_host: str = setting("", doc="restore on this server; empty = the backed-up one")
    verify_port: int = setting(0, minimum=0, maximum=65535, doc="0 = [postgresql] port")
    verify_user: str = setting("", doc="empty = [postgresql] user")
    verify_password: str = setting("", secret=True, doc="empty = [postgresql] password")
    maintenance_dbname: str = setting(
        "", doc="database to connect to for CREATE/DROP DATABASE; empty = the backed-up one"
    )


@register
class PgBackupVerify(Job):
    name = "pg-backup-verify"
    backend = "postgresql"
    description = "restores the newest backup into a scratch database and checks row counts"
    default_schedule = "0 5 * * 0"
    default_timeout_seconds = 6 * 3600.0
    changes_data = False
    Options = PgBackupVerifyOptions

    def _run(self) -> Outcome:
        from awops.backup.verify_run import VerifyRun

        return VerifyRun(self.context, self.options).run()

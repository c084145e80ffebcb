"""The options of ``pg-backup`` and ``pg-backup-verify`` (``[jobs.<name>]`` keys).

They live with the library that reads them; the job modules in ``awops.jobs`` import them.
This module stays cheap to import: every job module is imported at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from awops.backup.encryption import check_recipient
from awops.backup.target_url import EXPECTED_ONE, target_url_problem
from awops.settings import MAX_PG_TIMEOUT_SECONDS, setting

ALL_TARGETS = "all"


def _recipients(value: list[str]) -> str | None:
    for recipient in value:
        expected = check_recipient(recipient)
        if expected is not None:
            return expected
    return None


def _verify_target(value: str) -> str | None:
    if not value or value == ALL_TARGETS:
        return None
    problem = target_url_problem(value)
    return None if problem is None else f"{EXPECTED_ONE}, or 'all' ({problem})"


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
    min_size_bytes: int = setting(
        4096,
        minimum=0,
        doc="a smaller dump is a problem (an empty ActingWeb database dumps ~14 KB); 0 = off",
    )
    max_row_drop_ratio: float = setting(
        0.5,
        minimum=0,
        maximum=1,
        doc="a problem when total rows fall by more than this since the last backup; 1 = off",
    )
    dump_globals: bool = setting(
        True, doc="also save roles and memberships (pg_dumpall --globals-only --no-role-passwords)"
    )


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class PgBackupVerifyOptions:
    target: str = setting(
        "",
        check=_verify_target,
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

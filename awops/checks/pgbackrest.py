"""``pgbackrest``: the health of an existing pgBackRest setup, read from ``pgbackrest info``.

Off until ``stanza`` is set: without it every run is ``skipped`` and says how to turn it on.
Per stanza and repository it exports the status, the newest full, differential and
incremental backups' ages and sizes, and the WAL archive after the newest backup; a stale
backup, a stanza or repository in error, or a hole in the archive is a ``problem``. On its own
``check_schedule`` (weekly) it runs ``pgbackrest check``, which proves ``archive_command``
end to end. The work is in :mod:`awops.pgbackrest.check_run`, imported when the job runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from awops.abc import Job
from awops.registry import register
from awops.result import Outcome
from awops.schedule import ScheduleError, parse_schedule
from awops.settings import setting

if TYPE_CHECKING:
    from awops.config import Config

_STANZA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def stanza_name(value: Any) -> str | None:
    if value == "" or (isinstance(value, str) and _STANZA.match(value) and len(value) <= 255):
        return None
    return "a pgBackRest stanza name (letters, digits, '.', '_', '-'), or empty"


def absolute_path_or_empty(value: Any) -> str | None:
    if value == "" or (isinstance(value, str) and value.startswith("/") and "\x00" not in value):
        return None
    return "an absolute path, or empty"


def _schedule_or_empty(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_schedule(value)
    except ScheduleError as exc:
        return f"an interval such as 'every 7d' or a cron expression, or empty ({exc})"
    return None


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class PgBackRestOptions:
    stanza: str = setting(
        "", check=stanza_name, doc="the pgBackRest stanza; empty = the job is skipped"
    )
    config: str = setting(
        "",
        check=absolute_path_or_empty,
        doc="pgbackrest --config; empty = pgBackRest's default (/etc/pgbackrest/pgbackrest.conf)",
    )
    repo: int = setting(0, minimum=0, maximum=256, doc="only this repository; 0 = every one")
    pgbackrest: str = setting("pgbackrest", doc="the pgbackrest program or its path")
    max_backup_age_seconds: float = setting(
        36 * 3600.0, minimum=1, doc="each repository's newest backup (any type) may be this old"
    )
    max_full_backup_age_seconds: float = setting(
        8 * 86400.0, minimum=0, doc="each repository's newest full backup may be this old; 0 = any"
    )
    check_archive: bool = setting(
        True, doc="walk the archive from the newest backup's start for missing WAL segments"
    )
    check_schedule: str = setting(
        "0 4 * * 0",
        check=_schedule_or_empty,
        doc="when to run pgbackrest check (also at a process's first run, and every run "
        "while it fails); empty = never",
    )
    archive_timeout_seconds: float = setting(
        0.0, minimum=0, maximum=86400, doc="pgbackrest check --archive-timeout; 0 = pgBackRest's"
    )
    command_timeout_seconds: float = setting(
        120.0, minimum=1, doc="pgbackrest info and repo-ls are killed after this long"
    )
    check_timeout_seconds: float = setting(
        600.0, minimum=1, doc="pgbackrest check is killed after this long"
    )


@register
class PgBackRestCheck(Job[PgBackRestOptions]):
    name = "pgbackrest"
    backend = "postgresql"
    description = (
        "pgBackRest stanza, repositories, backup ages and sizes, WAL archive; weekly check"
    )
    default_schedule = "every 15m"
    default_timeout_seconds = 900.0
    Options = PgBackRestOptions
    configure_hint = "set [jobs.pgbackrest] stanza or AWOPS_JOB_PGBACKREST_STANZA"

    @classmethod
    def unconfigured_reason(cls, options: PgBackRestOptions, config: Config) -> str | None:
        return None if options.stanza else "no stanza set"

    def _run(self) -> Outcome:
        # The check's boundary: its library is imported when it runs, not when configured.
        from awops.pgbackrest.check_run import CheckRun

        return CheckRun(self.context, self.options).run()

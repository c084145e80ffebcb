"""``pgbackrest-restore-verify``: proof that the newest physical backup starts (opt-in).

Restores the newest pgBackRest backup into a scratch directory on the awops host
(``pgbackrest restore --type=immediate --target-action=promote``), starts it as a temporary
server on a free loopback port, waits for consistency, counts the rows of each ActingWeb table,
reads the Alembic revision, then stops the server and removes the directory, also on failure
and, at the next run, after a crash. The restore-to-first-connection time is reported as the
measured RTO. The work is in :mod:`awops.pgbackrest.verify_run`, imported when the job runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from awops.abc import Job
from awops.checks.pgbackrest import absolute_path_or_empty, stanza_name
from awops.registry import register
from awops.result import Outcome, Status
from awops.settings import pg_identifier_list, setting

if TYPE_CHECKING:
    from awops.config import Config

_SERVER_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=.*$", re.DOTALL)


def _server_settings(value: Any) -> str | None:
    for item in value:
        if not _SERVER_SETTING.match(item) or "\x00" in item:
            return "a list of PostgreSQL settings as 'name=value'"
    return None


def _identifier_or_empty(value: Any) -> str | None:
    if value == "":
        return None
    return pg_identifier_list([value])


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class PgBackRestRestoreVerifyOptions:
    stanza: str = setting("", check=stanza_name, doc="empty = [jobs.pgbackrest] stanza")
    config: str = setting(
        "", check=absolute_path_or_empty, doc="pgbackrest --config; empty = [jobs.pgbackrest]'s"
    )
    repo: int = setting(
        0,
        minimum=0,
        maximum=256,
        doc="restore from this repository; 0 = [jobs.pgbackrest]'s, "
        "else the one holding the newest backup",
    )
    pgbackrest: str = setting("", doc="the pgbackrest program; empty = [jobs.pgbackrest]'s")
    work_dir: str = setting(
        "",
        check=absolute_path_or_empty,
        doc="where the scratch data directory goes (needs room for the whole database); "
        "empty = the system temp directory",
    )
    server_bindir: str = setting(
        "",
        check=absolute_path_or_empty,
        doc="PostgreSQL server binaries of the backup's version; empty = "
        "/usr/lib/postgresql/<version>/bin, else postgres on PATH",
    )
    server_user: str = setting(
        "postgres", doc="when awops runs as root, restore and start the server as this user"
    )
    server_settings: list[str] = setting(
        [],
        check=_server_settings,
        doc="extra 'name=value' settings for the temporary server (e.g. shared_buffers=1GB)",
    )
    database: str = setting("", check=_identifier_or_empty, doc="empty = [postgresql] dbname")
    user: str = setting(
        "",
        check=_identifier_or_empty,
        doc="role to read as (no password); empty = [postgresql] user",
    )
    schema: str = setting(
        "",
        check=_identifier_or_empty,
        doc="empty = ActingWeb's schema, [postgresql] <prefix><schema>",
    )
    tables: list[str] = setting(
        [], check=pg_identifier_list, doc="tables to count; empty = ActingWeb's"
    )
    expected_alembic_revision: str = setting(
        "", doc="a problem unless alembic_version holds this revision; empty = any one"
    )
    process_max: int = setting(
        0, minimum=0, maximum=64, doc="pgbackrest restore --process-max; 0 = pgBackRest's"
    )
    ready_timeout_seconds: float = setting(
        1800.0, minimum=1, doc="the restored server must accept connections within this long"
    )
    command_timeout_seconds: float = setting(
        120.0, minimum=1, doc="pgbackrest info is killed after this long"
    )


@register
class PgBackRestRestoreVerify(Job[PgBackRestRestoreVerifyOptions]):
    name = "pgbackrest-restore-verify"
    backend = "postgresql"
    description = "restores the newest pgBackRest backup, starts it, counts ActingWeb's rows"
    default_schedule = "0 5 * * 6"
    default_enabled = False
    default_timeout_seconds = 6 * 3600.0
    Options = PgBackRestRestoreVerifyOptions
    # Off by default: enabled without a stanza is a mistake to hear about.
    unconfigured_status = Status.ERROR
    configure_hint = (
        "set jobs.pgbackrest-restore-verify.stanza or jobs.pgbackrest.stanza to the stanza to "
        "restore"
    )

    @classmethod
    def unconfigured_reason(
        cls, options: PgBackRestRestoreVerifyOptions, config: Config
    ) -> str | None:
        shared = config.jobs.get("pgbackrest")
        if options.stanza or (shared is not None and shared.options.stanza):
            return None
        return "no stanza set"

    def _run(self) -> Outcome:
        # The job's boundary: its library (and psycopg) is imported when it runs, not when
        # the job is listed or its options are validated.
        from awops.pgbackrest.verify_run import RestoreVerifyRun

        return RestoreVerifyRun(self.context, self.options).run()

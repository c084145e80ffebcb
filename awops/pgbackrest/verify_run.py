"""One run of ``pgbackrest-restore-verify``: the newest backup restored into a scratch
directory, started as a temporary server, read, stopped and removed.

pgBackRest's own ``verify`` checks checksums only; this proves the backup starts: recovery
reaches consistency, the server promotes, and ActingWeb's tables are there to count. The time
from ``pgbackrest restore`` to the first accepted connection is the measured recovery time.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from awops.actingweb import PG_TABLES
from awops.errors import JobInterrupted, first_line
from awops.metrics import catalogue
from awops.pgbackrest import BACKEND_LABEL
from awops.pgbackrest.cli import PgBackRest, Settings
from awops.pgbackrest.errors import PgBackRestError
from awops.pgbackrest.info import Backup
from awops.pgbackrest.process import child_environment, run_as_for
from awops.pgbackrest.server import (
    TemporaryServer,
    create_scratch,
    find_bindir,
    remove_stale_scratch,
    stale_scratch,
)
from awops.result import Outcome
from awops.stop_watch import StopWatcher

if TYPE_CHECKING:
    from awops.context import JobContext
    from awops.jobs.pgbackrest_restore_verify import PgBackRestRestoreVerifyOptions

logger = logging.getLogger(__name__)

JOB = "jobs.pgbackrest-restore-verify"


class _Problem(Exception):
    """The backup did not restore, start or hold ActingWeb's data: ``problem``, not ``error``."""


class RestoreVerifyRun:
    def __init__(self, context: JobContext, options: PgBackRestRestoreVerifyOptions) -> None:
        self.context = context
        self.options = options

    def settings(self) -> tuple[Settings, int]:
        """This job's stanza, config, program and repo; each empty one from [jobs.pgbackrest]."""
        own = self.options
        shared = self.context.config.jobs.get("pgbackrest")
        other = shared.options if shared is not None else None
        stanza = own.stanza or (other.stanza if other is not None else "")
        if not stanza:
            raise PgBackRestError(
                f"no stanza: set {JOB}.stanza or jobs.pgbackrest.stanza to the stanza to restore"
            )
        return (
            Settings(
                program=own.pgbackrest or (other.pgbackrest if other is not None else "pgbackrest"),
                config=own.config or (other.config if other is not None else ""),
                stanza=stanza,
                option_prefix=JOB,
            ),
            own.repo or (other.repo if other is not None else 0),
        )

    def run(self) -> Outcome:
        settings, repo = self.settings()
        options = self.options
        run_as = run_as_for(options.server_user)
        env = child_environment(run_as)
        client = PgBackRest(
            settings,
            stop_requested=self.context.should_stop,
            command_timeout_seconds=options.command_timeout_seconds,
            run_as=run_as,
            env=env,
        )
        info = client.info(repo)
        newest = info.newest(repo or None)
        details: dict[str, Any] = {"stanza": settings.stanza}
        if newest is None:
            where = f"repo{repo}" if repo else "any repository"
            return Outcome.problem(f"no backup of stanza {settings.stanza} in {where}", **details)
        version = info.db_versions.get(newest.db_id, "")
        bindir = find_bindir(options.server_bindir, version)
        details.update(
            repo=f"repo{newest.repo}",
            backup=newest.label,
            backup_type=newest.type,
            postgresql_version=version,
            size_bytes=newest.size_bytes,
        )
        work_dir = Path(options.work_dir or tempfile.gettempdir())
        now = self.context.clock()
        if self.context.dry_run:
            # pgbackrest info and the search for the server's binaries only read.
            stale = [path.name for path in stale_scratch(work_dir, now)]
            return Outcome.ok(
                f"dry run: would restore {newest.type} backup {newest.label} of stanza "
                f"{settings.stanza} ({newest.size_bytes} bytes, repo{newest.repo}) under "
                f"{work_dir} and start it with {bindir / 'postgres'}"
                + (f"; would remove {len(stale)} stale scratch directories" if stale else ""),
                dry_run=True,
                would_remove_stale=stale,
                **details,
            )
        removed = remove_stale_scratch(work_dir, now)
        if removed:
            details["removed_stale"] = removed
        scratch = create_scratch(work_dir, self.context.run_id, now, run_as)
        server = TemporaryServer(bindir, scratch, run_as, env, _parse_settings(options))
        try:
            measured = self._restore_and_read(client, newest, server, details)
        except _Problem as problem:
            return Outcome.problem(
                f"backup {newest.label} of stanza {settings.stanza}: {problem}", **details
            )
        finally:
            server.remove()
        return self._report(settings.stanza, newest, measured, details)

    def _restore_and_read(
        self, client: PgBackRest, backup: Backup, server: TemporaryServer, details: dict[str, Any]
    ) -> float:
        """Restore, start, read; the measured recovery time in seconds."""
        options = self.options
        scratch = server.scratch
        logger.info(
            "restoring %s backup %s (%d bytes, repo%d) into %s",
            backup.type,
            backup.label,
            backup.size_bytes,
            backup.repo,
            scratch,
        )
        started = time.monotonic()
        try:
            client.restore(
                repo=backup.repo,
                label=backup.label,
                data_dir=str(server.data_dir),
                tablespace_dir=str(scratch / "tablespaces"),
                process_max=options.process_max,
                timeout_seconds=max(self.context.seconds_left(), 1.0),
            )
        except JobInterrupted:
            raise
        except PgBackRestError as exc:
            raise _Problem(str(exc)) from None
        details["restore_seconds"] = round(time.monotonic() - started, 3)
        logger.info(
            "restored in %.1f s; starting it to replay to consistency", details["restore_seconds"]
        )
        recovery_started = time.monotonic()
        with StopWatcher(self.context.should_stop, server.signal_stop) as watcher:
            try:
                server.start_and_wait_ready(options.ready_timeout_seconds, self.context.should_stop)
                measured = time.monotonic() - started
                details["recovery_seconds"] = round(time.monotonic() - recovery_started, 3)
                details["port"] = server.port
                logger.info("the restored server accepts connections after %.1f s", measured)
                self._read(server, details)
            except PgBackRestError as exc:
                if watcher.fired:
                    raise JobInterrupted("restore test stopped: shutdown requested") from None
                raise _Problem(str(exc)) from None
            except _Problem:
                if watcher.fired:
                    raise JobInterrupted("restore test stopped: shutdown requested") from None
                raise
        return measured

    def _read(self, server: TemporaryServer, details: dict[str, Any]) -> None:
        pg = self.context.config.postgresql
        options = self.options
        dbname = options.database or pg.dbname
        user = options.user or pg.user
        schema = options.schema or pg.search_schema
        tables = options.tables or _actingweb_tables()
        details.update(database=dbname, schema=schema)
        try:
            conn = psycopg.connect(**server.connect_kwargs(dbname, user), autocommit=True)
        except psycopg.OperationalError as exc:
            raise _Problem(f"cannot connect to {dbname} as {user}: {first_line(exc)}") from None
        try:
            with conn:
                existing, counts, revisions = _count(conn, schema, tables)
        except psycopg.Error as exc:
            raise _Problem(f"reading the restored database failed: {first_line(exc)}") from None
        details["tables"] = counts
        details["missing_tables"] = [table for table in tables if table not in existing]
        details["alembic_revision"] = revisions[0] if len(revisions) == 1 else None
        if not counts:
            raise _Problem(
                f"restored database {dbname} holds none of ActingWeb's tables in schema {schema}"
            )
        if "alembic_version" in existing and len(revisions) != 1:
            raise _Problem(f"alembic_version holds {len(revisions)} rows, expected 1")
        expected = options.expected_alembic_revision
        if expected and details["alembic_revision"] != expected:
            raise _Problem(
                f"Alembic revision is {details['alembic_revision']}, expected {expected} "
                f"(expected_alembic_revision)"
            )

    def _report(
        self, stanza: str, backup: Backup, measured: float, details: dict[str, Any]
    ) -> Outcome:
        metrics = self.context.metrics
        labels = {"stanza": stanza}
        shared = {"backend": BACKEND_LABEL, "target": stanza}
        now = self.context.clock()
        details["rto_seconds"] = round(measured, 3)
        metrics.series(catalogue.PGBACKREST_RESTORE_DURATION).labels(**labels).set(measured)
        metrics.series(catalogue.BACKUP_RESTORE_DURATION).labels(**shared).set(measured)
        rows = metrics.series(catalogue.PGBACKREST_RESTORED_TABLE_ROWS)
        for table, count in details["tables"].items():
            rows.labels(stanza=stanza, table=table).set(count)
        metrics.series(catalogue.PGBACKREST_RESTORE_VERIFY_LAST_SUCCESS).labels(**labels).set(now)
        metrics.series(catalogue.BACKUP_VERIFY_LAST_SUCCESS).labels(**shared).set(now)
        revision = details["alembic_revision"]
        return Outcome.ok(
            f"backup {backup.label} of stanza {stanza} restored and started in {measured:.1f} s "
            f"(RTO); {sum(details['tables'].values())} rows in {len(details['tables'])} "
            f"ActingWeb tables; Alembic revision {revision or 'none'}",
            **details,
        )


def _count(conn: Any, schema: str, tables: list[str]) -> tuple[set[str], dict[str, int], list[str]]:
    """(tables in the schema, rows of each wanted one, alembic_version's rows)."""
    existing = {
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (schema,),
        )
    }
    counts: dict[str, int] = {}
    for table in tables:
        if table in existing:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            counts[table] = int(row[0]) if row else 0
    revisions: list[str] = []
    if "alembic_version" in existing:
        query = sql.SQL("SELECT version_num FROM {}.alembic_version").format(sql.Identifier(schema))
        revisions = [str(row[0]) for row in conn.execute(query)]
    return existing, counts, revisions


def _parse_settings(options: PgBackRestRestoreVerifyOptions) -> dict[str, str]:
    return dict(item.split("=", 1) for item in options.server_settings)


def _actingweb_tables() -> list[str]:
    return list(PG_TABLES)

"""The server side of a restore: connecting, what a database holds, creating and dropping.

Connections use the ``[postgresql]`` settings with another database name. CREATE and DROP
DATABASE run on a maintenance database: ``[jobs.pg-backup-verify] maintenance_dbname`` when
set, else the first of the configured database, ``postgres`` and ``template1`` that accepts
the connection (never the database being restored into). Every name is quoted with
``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from awops.config import PostgresSettings
from awops.errors import first_line
from awops.pg import PgConnector
from awops.restore.request import RestoreError
from awops.restore.stopping import StopRequest

logger = logging.getLogger(__name__)

_TABLES = r"""
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY 1
"""
_SCHEMAS = r"""
SELECT nspname FROM pg_namespace
WHERE nspname NOT IN ('pg_catalog', 'information_schema')
  AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp\_%'
"""


@dataclass(frozen=True)
class DatabaseState:
    """What the database a restore goes into holds now."""

    exists: bool
    tables: tuple[str, ...] = ()  # "schema.table"
    schemas: tuple[str, ...] = ()

    def describe(self, name: str) -> str:
        if not self.exists:
            return f"database {name} does not exist"
        if not self.tables:
            return f"database {name} exists and holds no table"
        shown = ", ".join(self.tables[:3]) + (", ..." if len(self.tables) > 3 else "")
        return f"database {name} exists and holds {len(self.tables)} table(s) ({shown})"


class Server:
    """The PostgreSQL server a restore writes to, reached with the ``[postgresql]`` settings."""

    def __init__(self, settings: PostgresSettings, stop: StopRequest, maintenance_dbname: str):
        self.settings = settings
        self.stop = stop
        self.maintenance_dbname = maintenance_dbname

    @property
    def display(self) -> str:
        return f"{self.settings.user}@{self.settings.host}:{self.settings.port}"

    def libpq_environment(self) -> dict[str, str]:
        """PG* variables for pg_restore: the password goes there, never into argv."""
        return PgConnector(self.settings).libpq_environment()

    def _open(self, dbname: str) -> Any:
        settings = dataclasses.replace(self.settings, dbname=dbname)
        try:
            return psycopg.connect(**PgConnector(settings).connect_kwargs(), autocommit=True)
        except psycopg.Error as exc:
            raise RestoreError(f"PostgreSQL {self.display}/{dbname}: {first_line(exc)}") from None

    @contextmanager
    def _session(self, conn: Any, dbname: str, cancellable: bool) -> Iterator[Any]:
        unregister = self.stop.register(conn.cancel_safe) if cancellable else lambda: None
        try:
            yield conn
        except psycopg.Error as exc:
            if cancellable:
                self.stop.check()  # cancelled by the stop request: say that, not the error
            raise RestoreError(f"PostgreSQL {self.display}/{dbname}: {first_line(exc)}") from None
        finally:
            unregister()
            conn.close()

    def connect(self, dbname: str, cancellable: bool = True) -> AbstractContextManager[Any]:
        """An autocommit session on ``dbname``; a stop request cancels its running query
        unless it is not ``cancellable`` (the cleanup's own sessions)."""
        return self._session(self._open(dbname), dbname, cancellable)

    def maintenance(self, avoid: str, cancellable: bool = True) -> AbstractContextManager[Any]:
        """A session for CREATE and DROP DATABASE, on a database other than ``avoid``."""
        if self.maintenance_dbname:
            candidates = [self.maintenance_dbname]
        else:
            candidates = [self.settings.dbname, "postgres", "template1"]
        candidates = [name for i, name in enumerate(candidates) if name not in candidates[:i]]
        candidates = [name for name in candidates if name != avoid]
        if not candidates:
            raise RestoreError(
                f"no maintenance database to connect to: {avoid} is the restore's own; set "
                "[jobs.pg-backup-verify] maintenance_dbname"
            )
        failures = []
        for name in candidates:
            try:
                return self._session(self._open(name), name, cancellable)
            except RestoreError as exc:
                failures.append(str(exc))
        raise RestoreError("cannot connect to a maintenance database: " + "; ".join(failures))

    def state(self, admin: Any, dbname: str) -> DatabaseState:
        """Whether ``dbname`` exists, and the tables and schemas it holds."""
        row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if row is None:
            return DatabaseState(exists=False)
        with self.connect(dbname) as conn:
            tables = tuple(r[0] for r in conn.execute(_TABLES).fetchall())
            schemas = tuple(r[0] for r in conn.execute(_SCHEMAS).fetchall())
        return DatabaseState(True, tables, schemas)

    @staticmethod
    def server_version_num(admin: Any) -> int:
        row = admin.execute("SELECT current_setting('server_version_num')::int").fetchone()
        return int(row[0])

    def create(self, admin: Any, dbname: str) -> None:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(dbname))
        )
        logger.info("created database %s", dbname)

    def drop(self, dbname: str) -> None:
        """Drop ``dbname``, ending its sessions first (what pg_restore left)."""
        with self.maintenance(avoid=dbname, cancellable=False) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname))
            if self.server_version_num(admin) >= 130000:
                admin.execute(sql.SQL("{} WITH (FORCE)").format(drop))
            else:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                )
                admin.execute(drop)
        logger.info("dropped database %s, which this restore had created", dbname)

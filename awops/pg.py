"""PostgreSQL access: one psycopg_pool ``ConnectionPool`` per process, sized by ``PG_POOL_*``.

Connections are autocommit with ``search_path`` set to ActingWeb's schema; jobs open explicit
``conn.transaction()`` blocks so every transaction they hold is one they chose.

A failed connection is classified (unreachable, authentication failed, database missing, role
missing) and said once per run, in one line: the run's result.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from awops.config import PostgresSettings
from awops.errors import BackendUnavailable, first_line
from awops.pool_stats import PoolTotals

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]


class PgConnector:
    """The pool plus the few things jobs need beside it (a dedicated session, libpq env).

    Each pool it opens and closes is told to ``pool_totals``, which keeps the process' running
    totals of psycopg_pool's counters across pools.
    """

    def __init__(
        self,
        settings: PostgresSettings,
        on_reached: Callable[[], None] = lambda: None,
        pool_totals: PoolTotals | None = None,
    ) -> None:
        self.settings = settings
        self._on_reached = on_reached
        self.pool_totals = pool_totals if pool_totals is not None else PoolTotals()
        self._pool: ConnectionPool[Connection] | None = None
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        return self.settings.display_target

    def describe_failure(self, exc: BaseException) -> str:
        """``exc``, a failed connection to this server, classified in one line."""
        return describe_failure(self.target, exc)

    def connect_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "host": s.host,
            "port": s.port,
            "dbname": s.dbname,
            "user": s.user,
            "password": s.password,
            "sslmode": s.sslmode,
            "connect_timeout": s.connect_timeout_seconds,
            "application_name": s.application_name,
        }

    def libpq_environment(self) -> dict[str, str]:
        """Variables for client programs (pg_dump, pg_restore); the password never goes in argv."""
        s = self.settings
        env = {
            "PGHOST": s.host,
            "PGPORT": str(s.port),
            "PGDATABASE": s.dbname,
            "PGUSER": s.user,
            "PGSSLMODE": s.sslmode,
            "PGCONNECT_TIMEOUT": str(s.connect_timeout_seconds),
            "PGAPPNAME": s.application_name,
        }
        if s.password:
            env["PGPASSWORD"] = s.password
        return env

    @property
    def pool(self) -> ConnectionPool[Connection]:
        with self._lock:
            if self._pool is None:
                _quiet_pool_connect_errors()
                self._pool = ConnectionPool(
                    kwargs={**self.connect_kwargs(), "autocommit": True},
                    min_size=self.settings.pool_min_size,
                    max_size=self.settings.pool_max_size,
                    timeout=self.settings.pool_timeout_seconds,
                    configure=self._configure,
                    check=ConnectionPool.check_connection,
                    name="awops",
                    open=True,
                )
                self.pool_totals.opened(self._pool)
            return self._pool

    def _configure(self, conn: Connection) -> None:
        conn.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(self.settings.search_schema))
        )

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection; a server that cannot be reached or refuses the login becomes
        :class:`BackendUnavailable`, classified."""
        try:
            with self._checked_pool().connection() as conn:
                self._on_reached()
                yield conn
        except PoolTimeout:
            raise BackendUnavailable(self._diagnose()) from None
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(self.describe_failure(exc)) from None

    def _checked_pool(self) -> ConnectionPool[Connection]:
        """The pool, created once a first connection has succeeded: a server down or a wrong
        password is reported at once, instead of after ``pool_timeout_seconds`` of the pool
        retrying in the background (and a daemon whose server is down keeps no pool retrying
        between runs)."""
        with self._lock:
            created = self._pool is not None
        if not created:
            psycopg.connect(**self.connect_kwargs()).close()
        return self.pool

    @contextmanager
    def dedicated_connection(self, autocommit: bool = True) -> Iterator[Connection]:
        """A session of its own, outside the pool (snapshots, advisory locks)."""
        try:
            conn = psycopg.connect(**self.connect_kwargs(), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(self.describe_failure(exc)) from None
        try:
            self._configure(conn)
            if not autocommit:
                conn.commit()
            self._on_reached()
            yield conn
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(self.describe_failure(exc)) from None
        finally:
            conn.close()

    def _diagnose(self) -> str:
        """Say why the pool gave nothing: a fresh connection attempt shows the real cause."""
        timeout = self.settings.pool_timeout_seconds
        try:
            probe = psycopg.connect(**{**self.connect_kwargs(), "connect_timeout": 5})
        except psycopg.Error as exc:
            return self.describe_failure(exc)
        probe.close()
        return (
            f"PostgreSQL {self.target}: no pooled connection free within {timeout:g} s "
            f"(pool_max_size {self.settings.pool_max_size})"
        )

    def pool_stats(self) -> dict[str, int]:
        return self.pool.get_stats() if self._pool is not None else {}

    def close(self, timeout_seconds: float = 5.0) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close(timeout=timeout_seconds)
                self.pool_totals.closed(self._pool)
                self._pool = None


UNREACHABLE = "unreachable"
AUTHENTICATION_FAILED = "authentication failed"
DATABASE_MISSING = "database missing"
ROLE_MISSING = "role missing"

# SQLSTATEs of a refused login. libpq reports connection failures without one, so the server's
# (English) message decides then; a server with lc_messages in another language is classified
# by SQLSTATE alone, where one is given.
_SQLSTATE_KINDS = {
    "28P01": AUTHENTICATION_FAILED,  # invalid_password
    "28000": AUTHENTICATION_FAILED,  # invalid_authorization_specification (pg_hba, or no role)
    "3D000": DATABASE_MISSING,  # invalid_catalog_name
    "57P03": UNREACHABLE,  # cannot_connect_now: starting up, shutting down
    "08001": UNREACHABLE,  # sqlclient_unable_to_establish_sqlconnection
    "08006": UNREACHABLE,  # connection_failure
}
_MESSAGE_KINDS = (
    (re.compile(r'role ".*" does not exist'), ROLE_MISSING),
    (re.compile(r'database ".*" does not exist'), DATABASE_MISSING),
    (
        re.compile(r"password authentication failed|authentication failed for user|pg_hba\.conf"),
        AUTHENTICATION_FAILED,
    ),
    (
        re.compile(
            r"Connection refused|timeout expired|timed out|could not translate host name|"
            r"Name or service not known|No route to host|Network is unreachable|"
            r"No such file or directory|server closed the connection unexpectedly|"
            r"the database system is (starting up|shutting down|in recovery mode)|"
            r"could not connect to server|SSL connection has been closed",
            re.IGNORECASE,
        ),
        UNREACHABLE,
    ),
)
_HINTS = {
    AUTHENTICATION_FAILED: "check the user and password; under password authentication a role"
    " that does not exist fails the same way",
    DATABASE_MISSING: "check the database name",
    ROLE_MISSING: "check the user name",
}
# libpq's preamble before the server's own words.
_PREAMBLE = re.compile(
    r"^(connection failed: )?(connection to server (at|on) .*? failed: )?(FATAL: +)?"
)


def failure_kind(exc: BaseException) -> str | None:
    """What a failed connection means: :data:`UNREACHABLE`, :data:`AUTHENTICATION_FAILED`,
    :data:`DATABASE_MISSING`, :data:`ROLE_MISSING`, or None when it is none of these."""
    message = str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "28000" and re.search(r'role ".*" does not exist', message):
        return ROLE_MISSING
    if sqlstate in _SQLSTATE_KINDS:
        return _SQLSTATE_KINDS[sqlstate]
    for pattern, kind in _MESSAGE_KINDS:
        if pattern.search(message):
            return kind
    return None


def describe_failure(target: str, exc: BaseException) -> str:
    """One line for a failed connection to ``target``: its kind, libpq's or the server's
    reason, and what to check (``PostgreSQL u@h:5432/db: authentication failed: password
    authentication failed for user "u" (check ...)``)."""
    kind = failure_kind(exc)
    reason = _PREAMBLE.sub("", first_line(exc)) or type(exc).__name__
    if kind is None:
        return f"PostgreSQL {target}: {reason}"
    if kind == UNREACHABLE:
        return f"PostgreSQL {target} unreachable: {reason}"
    return f"PostgreSQL {target}: {kind}: {reason} ({_HINTS[kind]})"


class _PoolConnectErrors(logging.Filter):
    """psycopg_pool logs every failed background connect (two lines, each retry); the run
    that needed the connection says the cause once, classified. Those records become one
    DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "error connecting in %r: %s" or not isinstance(record.args, tuple):
            return True
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            return False
        pool_name, exc = record.args
        kind = failure_kind(exc) if isinstance(exc, BaseException) else None
        reason = _PREAMBLE.sub("", first_line(exc)) if isinstance(exc, BaseException) else exc
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg = "pool %r could not connect: %s: %s"
        record.args = (pool_name, kind or "error", reason)
        return True


_POOL_FILTER = _PoolConnectErrors()


def _quiet_pool_connect_errors() -> None:
    """Install :class:`_PoolConnectErrors` on psycopg_pool's logger, once."""
    pool_logger = logging.getLogger("psycopg.pool")
    if _POOL_FILTER not in pool_logger.filters:
        pool_logger.addFilter(_POOL_FILTER)

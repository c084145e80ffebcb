"""PostgreSQL access: one psycopg_pool ``ConnectionPool`` per process, sized by ``PG_POOL_*``.

Connections are autocommit with ``search_path`` set to ActingWeb's schema; jobs open explicit
``conn.transaction()`` blocks so every transaction they hold is one they chose.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from awops.config import PostgresSettings
from awops.errors import BackendUnavailable

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]


class PgConnector:
    """The pool plus the few things jobs need beside it (a dedicated session, libpq env)."""

    def __init__(
        self,
        settings: PostgresSettings,
        on_reached: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._on_reached = on_reached
        self._pool: ConnectionPool[Connection] | None = None
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        return self.settings.display_target

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
            return self._pool

    def _configure(self, conn: Connection) -> None:
        conn.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(self.settings.search_schema))
        )

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection; an unreachable server becomes :class:`BackendUnavailable`."""
        try:
            with self.pool.connection() as conn:
                self._on_reached()
                yield conn
        except PoolTimeout:
            raise BackendUnavailable(self._diagnose()) from None
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(f"PostgreSQL {self.target}: {_first_line(exc)}") from None

    @contextmanager
    def dedicated_connection(self, autocommit: bool = True) -> Iterator[Connection]:
        """A session of its own, outside the pool (snapshots, advisory locks)."""
        try:
            conn = psycopg.connect(**self.connect_kwargs(), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(f"PostgreSQL {self.target}: {_first_line(exc)}") from None
        try:
            self._configure(conn)
            if not autocommit:
                conn.commit()
            self._on_reached()
            yield conn
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(f"PostgreSQL {self.target}: {_first_line(exc)}") from None
        finally:
            conn.close()

    def _diagnose(self) -> str:
        """Say why the pool gave nothing: a fresh connection attempt shows the real cause."""
        timeout = self.settings.pool_timeout_seconds
        try:
            probe = psycopg.connect(**{**self.connect_kwargs(), "connect_timeout": 5})
        except psycopg.Error as exc:
            return f"PostgreSQL {self.target} unreachable: {_first_line(exc)}"
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
                self._pool = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""The PostgreSQL lock backend: a session-level advisory lock plus a row per job of slot records.

Imported only when a job that takes the lock locks in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from awops.errors import BackendUnavailable
from awops.locks.base import SLOT_EPSILON, Claim, Lease, LockBackend, slot_text

if TYPE_CHECKING:
    from awops.config import LockSettings
    from awops.pg import Connection, PgConnector

logger = logging.getLogger(__name__)


def advisory_key(database: str, job: str) -> int:
    """The signed 64-bit advisory lock key for ``('awops', database, job)``."""
    digest = hashlib.blake2b(
        b"\0".join(part.encode() for part in ("awops", database, job)), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgLocks(LockBackend):
    """Job locks in the database the jobs work on.

    Mutual exclusion is ``pg_try_advisory_lock`` with a key from :func:`advisory_key`, taken on
    a dedicated session (never a pooled connection): a session-level advisory lock lives
    exactly as long as its session, and the server grants it to one session at a time. A
    killed replica's lock goes with its TCP connection; TCP keepalives and
    ``tcp_user_timeout`` sized from ``lease_seconds`` make a replica cut off from the server
    lose its session, and so its lock, within about a lease period.

    The slot records live in the table ``[lock] table`` of the PostgreSQL schema, one row per
    job, written only while the advisory lock is held, so no two replicas write it at once.
    """

    def __init__(self, pg: PgConnector, settings: LockSettings, owner: str) -> None:
        self.pg = pg
        self.settings = settings
        self.owner = owner
        self._table_ready = False

    def slot_table(self) -> sql.Identifier:
        """The slot-record table, in the schema ActingWeb's tables live in."""
        return sql.Identifier(self.pg.settings.search_schema, self.settings.table)

    def _connect(self) -> Connection:
        lease = self.settings.lease_seconds
        kwargs = {
            **self.pg.connect_kwargs(),
            "application_name": f"{self.pg.settings.application_name}-lock"[:63],
            # A replica cut off from the server loses its session, and so its lock, in
            # about a lease period instead of the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": max(1, int(lease / 3)),
            "keepalives_interval": max(1, int(lease / 6)),
            "keepalives_count": 3,
            "tcp_user_timeout": int(lease * 1000),
        }
        try:
            return psycopg.connect(**kwargs, autocommit=True)
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(
                f"{self.pg.describe_failure(exc)} (taking the job lock)"
            ) from None

    def claim(self, job: str, slot: float | None, should_stop: Callable[[], bool]) -> Claim:
        # The server answers at once, so there is never a wait for should_stop to cut short.
        conn = self._connect()
        try:
            key = advisory_key(self.pg.settings.dbname, job)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
            if not row or not row[0]:
                conn.close()
                return Claim(None, "another replica is running it (PostgreSQL advisory lock)")
            took_over = False
            if slot is not None:
                refused, took_over = self._record_slot(conn, job, slot)
                if refused is not None:
                    conn.close()
                    return refused
        except psycopg.Error as exc:
            conn.close()
            raise BackendUnavailable(
                f"{self.pg.describe_failure(exc)} (taking the job lock)"
            ) from None
        lease = _PgLease(self, conn, key, job, slot)
        lease.start()
        return Claim(lease, took_over=took_over)

    def _record_slot(self, conn: Connection, job: str, slot: float) -> tuple[Claim | None, bool]:
        """Under the advisory lock: (a refusal, False) for a slot already run, else (None,
        whether an unfinished run is taken over) once the slot is recorded as started."""
        self._ensure_table(conn)
        record = conn.execute(
            _sql("SELECT last_slot, done, holder FROM {} WHERE job = %s", self.slot_table()), [job]
        ).fetchone()
        took_over = False
        if record is not None:
            last_slot, done, holder = record
            if last_slot >= slot - SLOT_EPSILON and done:
                return Claim(None, f"already run for this slot by {holder}"), False
            if not done:
                took_over = True
                logger.warning(
                    "%s stopped before finishing its run of %s; running it here", holder, job
                )
        conn.execute(
            _sql(
                "INSERT INTO {} AS t (job, last_slot, done, runs, holder, updated_at)"
                " VALUES (%s, %s, false, 1, %s, now())"
                " ON CONFLICT (job) DO UPDATE SET last_slot = GREATEST("
                "t.last_slot, EXCLUDED.last_slot), done = false, runs = t.runs + 1,"
                " holder = EXCLUDED.holder, updated_at = now()",
                self.slot_table(),
            ),
            [job, slot, self.owner],
        )
        logger.info("lock taken for slot %s", slot_text(slot))
        return None, took_over

    def _ensure_table(self, conn: Connection) -> None:
        if self._table_ready or not self.settings.create_table:
            return
        with conn.transaction():
            # Replicas starting together would race on CREATE TABLE IF NOT EXISTS.
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)",
                [advisory_key(self.pg.settings.dbname, "awops-create-lock-table")],
            )
            conn.execute(
                _sql(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " job text PRIMARY KEY,"
                    " last_slot double precision NOT NULL,"
                    " done boolean NOT NULL,"
                    " runs bigint NOT NULL DEFAULT 0,"
                    " holder text NOT NULL,"
                    " updated_at timestamptz NOT NULL DEFAULT now())",
                    self.slot_table(),
                )
            )
        self._table_ready = True


class _PgLease(Lease):
    """Held as long as its session lives: the heartbeat is a round trip on that session (a
    failed one means the session, and with it the lock, may be gone)."""

    def __init__(
        self, locks: PgLocks, conn: Connection, key: int, job: str, slot: float | None
    ) -> None:
        super().__init__(job, slot, max(1.0, locks.settings.lease_seconds / 3))
        self._locks = locks
        self._conn = conn
        self._key = key
        self._conn_lock = threading.Lock()

    def _heartbeat(self) -> bool:
        with self._conn_lock:
            self._conn.execute("SELECT 1")
        return True

    def _release(self) -> None:
        # The "done" write goes over the session that holds the advisory lock: a holder whose
        # session died cannot write it, and one that saw its lock lost does not try.
        try:
            with self._conn_lock:
                if self.slot is not None and not self.lost.is_set():
                    self._conn.execute(
                        _sql(
                            "UPDATE {} SET done = true, updated_at = now()"
                            " WHERE job = %s AND holder = %s",
                            self._locks.slot_table(),
                        ),
                        [self.job, self._locks.owner],
                    )
                self._conn.execute("SELECT pg_advisory_unlock(%s)", [self._key])
        finally:
            self._conn.close()


def _sql(template: str, *identifiers: sql.Identifier) -> sql.Composed:
    return sql.SQL(template).format(*identifiers)

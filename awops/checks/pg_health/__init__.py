"""``pg-health``: the pool and the server against thresholds, recorded as ``awops_pg_*`` metrics.

Figures: the pool (size, idle, waiting, how long this check waited, psycopg_pool's counters),
ping latency, client connections by state against ``max_connections``, the longest transaction,
the oldest idle-in-transaction session, sessions waiting on locks and the blocking chain of the
longest wait, replication lag (on a replica), transaction-ID and multixact age, deadlocks and
recovery conflicts, database size, WAL archiving, replication slots, live and dead rows, last
(auto)vacuum and analyze and rows changed since of ActingWeb's tables, and the expired-row
backlog of ``attributes``.

It needs only ``pg_monitor`` and SELECT on ActingWeb's tables. A figure it cannot read (a
missing privilege or function) is named as unavailable and makes the run a problem; it never
stops the other figures from being read.

The package holds one module per concern: ``options`` (the thresholds), ``queries`` (the
catalog and statistics queries of the session, server and table figures), ``pool``, ``server``
and ``tables`` (recording those against their thresholds), and ``archiving``, ``slots`` and
``blocking`` (each its own queries and recording). ``queries``, and ``archiving`` and ``slots``
which read through it, are imported when the check runs, so listing jobs or validating the
configuration never loads psycopg.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from awops.abc import Job
from awops.checks.pg_health.blocking import BlockingFigures, read_blocking_chain
from awops.checks.pg_health.findings import FIGURES, Findings
from awops.checks.pg_health.options import PgHealthOptions
from awops.checks.pg_health.pool import PoolSeries, record_pool
from awops.checks.pg_health.server import ServerFigures
from awops.checks.pg_health.tables import TableFigures
from awops.errors import BackendUnavailable, first_line
from awops.metrics import catalogue
from awops.registry import register
from awops.result import Outcome

if TYPE_CHECKING:
    from awops.checks.pg_health.archiving import ArchivingFigures
    from awops.checks.pg_health.slots import SlotFigures
    from awops.pg import Connection, PgConnector

__all__ = ["PgHealth", "PgHealthOptions"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@register
class PgHealth(Job[PgHealthOptions]):
    name = "pg-health"
    backend = "postgresql"
    description = "pool stats, ping latency and server figures against thresholds"
    default_schedule = "every 60s"
    default_timeout_seconds = 50.0
    Options = PgHealthOptions

    findings: Findings
    server: ServerFigures
    blocking: BlockingFigures
    archiving: ArchivingFigures
    slots: SlotFigures
    tables: TableFigures

    def _run(self) -> Outcome:
        # The boundary where psycopg is loaded: queries (and the archiving and slot figures,
        # which read through it) are imported when the check runs, not when it is configured.
        from awops.checks.pg_health import queries
        from awops.checks.pg_health.archiving import ArchivingFigures
        from awops.checks.pg_health.slots import SlotFigures

        metrics, opts, findings = self.context.metrics, self.options, Findings()
        memory = self.context.resources.job_memory.setdefault(self.name, {})
        self.queries, self.findings = queries, findings
        self.server = ServerFigures(metrics, opts, findings, memory)
        self.blocking = BlockingFigures(metrics, opts, findings)
        self.archiving = ArchivingFigures(metrics, opts, findings)
        self.slots = SlotFigures(metrics, opts, findings)
        self.tables = TableFigures(metrics, opts, findings)
        available = metrics.series(catalogue.PG_FIGURE_AVAILABLE)
        self._pool_wait_seconds, self._pool_exhausted = 0.0, False
        pg = self.context.pg
        # Measured before the probe: a probe that times out stays queued in psycopg_pool until
        # a connection comes back, and would count itself among the waiters.
        pool_before = pg.pool.get_stats()
        try:
            ping_seconds = self._read_server(pg)
        except BackendUnavailable:
            self.server.up.set(0)
            raise
        self.server.up.set(1)
        self.server.ping_seconds(ping_seconds)
        record_pool(
            PoolSeries(metrics),
            self.findings,
            opts,
            pg,
            pool_before,
            self._pool_wait_seconds,
            self._pool_exhausted,
        )
        unavailable = self.findings.unavailable
        for figure in FIGURES:
            available.labels(figure=figure).set(0 if figure in unavailable else 1)
        details = self.findings.details
        details["unavailable"] = dict(unavailable)
        if self.findings.problems or unavailable:
            return Outcome.problem(self.findings.summary(), **details)
        return Outcome.ok(
            f"PostgreSQL {pg.target} answered in {ping_seconds * 1000:.1f} ms", **details
        )

    def _read_server(self, pg: PgConnector) -> float:
        """Read every server figure; returns the ping. Probes the pool on the way in.

        The pooled connection is asked for with ``max_pool_wait_seconds`` as its timeout: a
        pool that cannot hand one over in time is the problem being reported, and the server
        figures are then read over a dedicated session instead.
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        limit = self.options.max_pool_wait_seconds
        started = time.perf_counter()
        try:
            with pg.pool.connection(timeout=limit) as conn:
                self._pool_wait_seconds = time.perf_counter() - started
                self.context.resources.readiness.mark("postgresql")
                return self._read_figures(conn)
        except PoolTimeout:
            self._pool_wait_seconds = time.perf_counter() - started
            self._pool_exhausted = True
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(pg.describe_failure(exc)) from None
        # Its failure says what went wrong, classified (unreachable, authentication failed ...).
        with pg.dedicated_connection() as conn:
            return self._read_figures(conn)

    def _read_figures(self, conn: Connection) -> float:
        # The runner's timeout cancels the query in flight, and only while this check owns it.
        owned = threading.Event()
        owned.set()
        self.context.on_cancel(lambda: conn.cancel_safe() if owned.is_set() else None)
        try:
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            ping_seconds = time.perf_counter() - started
            opts = self.options
            with conn.transaction():
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true),"
                    " set_config('lock_timeout', %s, true)",
                    (_ms(opts.query_timeout_seconds), _ms(opts.lock_timeout_seconds)),
                )
                self._read_all(conn)
            return ping_seconds
        finally:
            owned.clear()

    def _read(self, conn: Connection, figure: str, read: Callable[[], T]) -> T | None:
        """``read()`` in a savepoint; a figure it cannot read is named, not fatal."""
        self.context.raise_if_stopping()
        try:
            with conn.transaction():
                return read()
        except self.queries.UNREADABLE as exc:
            reason = first_line(exc)
            logger.warning("cannot read %s: %s", figure, reason)
            self.findings.unavailable[figure] = reason
            return None

    def _read_all(self, conn: Connection) -> None:
        from awops.checks.pg_health.archiving import read_archiver
        from awops.checks.pg_health.slots import read_slots

        q, server, tables = self.queries, self.server, self.tables
        schema = self.context.pg.settings.search_schema
        facts = self._read(conn, "connections", lambda: q.server_facts(conn))
        sessions = self._read(conn, "connections", lambda: q.sessions(conn))
        server.sessions(facts, sessions)
        if facts is None:
            self.findings.mark_unavailable("replication_lag", "server facts unreadable")
            self.findings.mark_unavailable("blocking_chain", "server facts unreadable")
            self.blocking.unreadable()
        else:
            server.recovery(facts.in_recovery)
            if facts.in_recovery:
                server.lag(
                    self._read(conn, "replication_lag", lambda: q.replication_lag_seconds(conn))
                )
            if facts.reads_all_stats:
                version = facts.version_num
                self.blocking.record(
                    self._read(conn, "blocking_chain", lambda: read_blocking_chain(conn, version))
                )
            else:
                self.findings.mark_unavailable(
                    "blocking_chain", "other roles' sessions need pg_monitor"
                )
                self.blocking.unreadable()
        server.xid_age_of(self._read(conn, "xid_age", lambda: q.oldest_xid_age(conn)))
        server.multixact_age_of(
            self._read(conn, "multixact_age", lambda: q.oldest_multixact_age(conn))
        )
        server.size(self._read(conn, "database_size", lambda: q.database_size_bytes(conn)))
        server.counters(
            self._read(conn, "deadlocks_and_conflicts", lambda: q.database_counters(conn))
        )
        self.archiving.record(self._read(conn, "wal_archiving", lambda: read_archiver(conn)))
        self.slots.record(self._read(conn, "replication_slots", lambda: read_slots(conn)))
        names = self.options.tables
        tables.tables(self._read(conn, "tables", lambda: q.tables(conn, schema, names)))
        table = self.options.ttl_table
        tables.ttl(self._read(conn, "ttl_backlog", lambda: q.ttl_backlog(conn, schema, table)))


def _ms(seconds: float) -> str:
    return str(max(int(seconds * 1000), 1))

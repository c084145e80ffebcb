"""``pg-health``: the pool and the server against thresholds, recorded as ``awops_pg_*`` metrics.

Figures: the pool (size, idle, waiting, how long this check waited, psycopg_pool's counters),
ping latency, client connections by state against ``max_connections``, the longest transaction,
the oldest idle-in-transaction session, sessions waiting on locks, replication lag (on a
replica), transaction-ID age, database size, live and dead rows, last (auto)vacuum and analyze
of ActingWeb's tables, and the expired-row backlog of ``attributes``.

It needs only ``pg_monitor`` and SELECT on ActingWeb's tables. A figure it cannot read (a
missing privilege or function) is named as unavailable and makes the run a problem; it never
stops the other figures from being read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from awops import ttl_backlog
from awops.abc import Job
from awops.errors import BackendUnavailable
from awops.registry import register
from awops.result import Outcome
from awops.settings import MAX_PG_TIMEOUT_SECONDS, pg_identifier, pg_identifier_list, setting

if TYPE_CHECKING:
    from awops.checks import _pg_queries as queries
    from awops.metrics import MetricsBase
    from awops.pg import Connection, PgConnector

logger = logging.getLogger(__name__)

T = TypeVar("T")

ACTINGWEB_TABLES = [
    "actors",
    "properties",
    "property_lookup",
    "trusts",
    "peertrustees",
    "subscriptions",
    "subscription_diffs",
    "subscription_suspensions",
    "attributes",
]

# psycopg_pool get_stats() counters exported as awops_pg_pool_<name>_total. get_stats() (not
# pop_stats()) leaves them running for the pool's life, so nothing else loses its figures.
_POOL_COUNTERS = {
    "requests_num": ("requests", "Requests for a pooled connection", 1),
    "requests_queued": ("requests_queued", "Requests that had to wait for a connection", 1),
    "requests_errors": ("requests_errors", "Requests that failed (timeout, too many waiting)", 1),
    "requests_wait_ms": ("requests_wait_seconds", "Time requests spent waiting", 0.001),
    "connections_errors": ("connection_errors", "Failed attempts to open a connection", 1),
    "connections_lost": ("connections_lost", "Pooled connections found broken", 1),
}


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class PgHealthOptions:
    max_ping_seconds: float = setting(0.5, minimum=0, doc="ping slower than this is a problem")
    max_pool_wait_seconds: float = setting(
        1.0, minimum=0.01, doc="waiting longer than this for a pooled connection is a problem"
    )
    max_connections_ratio: float = setting(
        0.8,
        minimum=0,
        maximum=1,
        doc="client connections above this share of max_connections are a problem",
    )
    max_transaction_seconds: float = setting(
        300.0, minimum=0, doc="a transaction open longer than this is a problem"
    )
    max_idle_in_transaction_seconds: float = setting(
        60.0, minimum=0, doc="a session idle in a transaction longer than this is a problem"
    )
    max_lock_waiting_sessions: int = setting(
        5, minimum=0, doc="more sessions than this waiting on a lock is a problem"
    )
    max_replication_lag_seconds: float = setting(
        30.0, minimum=0, doc="on a replica, replay further behind than this is a problem"
    )
    max_xid_age: int = setting(
        1_000_000_000,
        minimum=0,
        doc="age(datfrozenxid) of any database above this is a problem (wraparound near 2.1e9)",
    )
    max_database_size_bytes: int = setting(
        0, minimum=0, doc="the database larger than this is a problem; 0 means no limit"
    )
    max_dead_rows_ratio: float = setting(
        0.5,
        minimum=0,
        doc="a table with more dead rows than this share of its live rows is a problem",
    )
    min_dead_rows: int = setting(
        10000, minimum=0, doc="fewer dead rows than this never count against max_dead_rows_ratio"
    )
    tables: list[str] = setting(
        ACTINGWEB_TABLES, check=pg_identifier_list, doc="tables whose rows and vacuums are read"
    )
    ttl_table: str = setting(
        "attributes", check=pg_identifier, doc="table whose expired ttl_timestamp rows are counted"
    )
    max_ttl_expired_rows: int = setting(
        0, minimum=0, doc="more expired rows than this is a problem; 0 means no limit"
    )
    max_ttl_expired_age_seconds: float = setting(
        3600.0, minimum=0, doc="an expired row older than this (a stalled purge) is a problem"
    )
    query_timeout_seconds: float = setting(
        10.0,
        minimum=0.1,
        maximum=MAX_PG_TIMEOUT_SECONDS,
        doc="statement_timeout of each query the check runs",
    )
    lock_timeout_seconds: float = setting(
        2.0,
        minimum=0.1,
        maximum=MAX_PG_TIMEOUT_SECONDS,
        doc="a figure whose table stays locked longer is reported unavailable",
    )


class _Series:
    """Every series pg-health sets; asking the registry again returns the same ones."""

    def __init__(self, metrics: MetricsBase) -> None:
        g = metrics.gauge
        self.up = g("awops_pg_up", "1 when the last pg-health reached PostgreSQL")
        self.ping = g("awops_pg_ping_seconds", "Round trip of SELECT 1 through the pool")
        self.pool = g("awops_pg_pool_connections", "psycopg_pool statistics by state", ["state"])
        self.pool_wait = g(
            "awops_pg_pool_wait_seconds", "How long pg-health waited for a pooled connection"
        )
        self.pool_counters = {
            key: metrics.counter(f"awops_pg_pool_{name}_total", doc)
            for key, (name, doc, _) in _POOL_COUNTERS.items()
        }
        self.connections = g(
            "awops_pg_connections", "Client connections by pg_stat_activity state", ["state"]
        )
        self.max_connections = g("awops_pg_max_connections", "The server's max_connections")
        self.longest_transaction = g(
            "awops_pg_longest_transaction_seconds", "Age of the oldest open transaction"
        )
        self.idle_in_transaction = g(
            "awops_pg_idle_in_transaction_seconds",
            "How long the longest idle-in-transaction session has been idle",
        )
        self.lock_waiting = g("awops_pg_lock_waiting_sessions", "Sessions waiting on a lock")
        self.in_recovery = g("awops_pg_in_recovery", "1 when the server is a replica")
        self.replication_lag = g(
            "awops_pg_replication_lag_seconds", "How far replay trails the primary (0 on one)"
        )
        self.xid_age = g("awops_pg_xid_age", "Largest age(datfrozenxid) of the databases")
        self.database_size = g("awops_pg_database_size_bytes", "Size of the database")
        table = ["table"]
        self.live_rows = g("awops_pg_table_live_rows", "Estimated live rows", table)
        self.dead_rows = g("awops_pg_table_dead_rows", "Estimated dead rows", table)
        self.table_size = g("awops_pg_table_size_bytes", "Size with indexes and TOAST", table)
        self.last_vacuum = g(
            "awops_pg_table_last_vacuum_timestamp_seconds",
            "Last vacuum or autovacuum (0: never since statistics were reset)",
            table,
        )
        self.last_analyze = g(
            "awops_pg_table_last_analyze_timestamp_seconds",
            "Last analyze or autoanalyze (0: never since statistics were reset)",
            table,
        )
        self.ttl_expired = g("awops_pg_ttl_expired_rows", ttl_backlog.EXPIRED_ROWS_HELP, table)
        self.ttl_oldest = g(
            "awops_pg_ttl_oldest_expired_age_seconds", ttl_backlog.OLDEST_AGE_HELP, table
        )
        self.available = g(
            "awops_pg_figure_available",
            "1 when pg-health could read the figure, 0 when it could not",
            ["figure"],
        )


FIGURES = (
    "connections",
    "longest_transaction",
    "idle_in_transaction",
    "lock_waiting_sessions",
    "replication_lag",
    "xid_age",
    "database_size",
    "tables",
    "ttl_backlog",
)


class _Findings:
    """Details, crossed thresholds and unreadable figures of one run."""

    def __init__(self) -> None:
        self.details: dict[str, Any] = {}
        self.problems: list[str] = []
        self.unavailable: dict[str, str] = {}

    def summary(self) -> str:
        parts = list(self.problems)
        if self.unavailable:
            parts.append(
                "unavailable: "
                + ", ".join(f"{name} ({why})" for name, why in self.unavailable.items())
            )
        return "; ".join(parts)


@register
class PgHealth(Job):
    name = "pg-health"
    backend = "postgresql"
    description = "pool stats, ping latency and server figures against thresholds"
    default_schedule = "every 60s"
    default_timeout_seconds = 50.0
    Options = PgHealthOptions

    def _run(self) -> Outcome:
        from awops.checks import _pg_queries

        self.queries = _pg_queries
        self.series = _Series(self.context.metrics)
        self.findings = _Findings()
        self._pool_wait_seconds, self._pool_exhausted = 0.0, False
        pg = self.context.pg
        # Measured before the probe: a probe that times out stays queued in psycopg_pool until
        # a connection comes back, and would count itself among the waiters.
        pool_before = pg.pool.get_stats()
        try:
            ping_seconds = self._read_server(pg)
        except BackendUnavailable:
            self.series.up.set(0)
            raise
        self.series.up.set(1)
        self.series.ping.set(ping_seconds)
        opts = self.options
        details = self.findings.details
        details["ping_seconds"] = round(ping_seconds, 6)
        details["max_ping_seconds"] = opts.max_ping_seconds
        if ping_seconds > opts.max_ping_seconds:
            self.findings.problems.insert(
                0,
                f"ping {ping_seconds * 1000:.0f} ms above max_ping_seconds "
                f"{opts.max_ping_seconds:g}",
            )
        self._record_pool(pg, pool_before)
        for figure in FIGURES:
            self.series.available.labels(figure=figure).set(
                0 if figure in self.findings.unavailable else 1
            )
        details["unavailable"] = dict(self.findings.unavailable)
        if self.findings.problems or self.findings.unavailable:
            return Outcome.problem(self.findings.summary(), **details)
        return Outcome.ok(
            f"PostgreSQL {pg.target} answered in {ping_seconds * 1000:.1f} ms", **details
        )

    # -- reading -----------------------------------------------------------------------------

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
            reason = _first_line(exc)
            logger.warning("cannot read %s: %s", figure, reason)
            self.findings.unavailable[figure] = reason
            return None

    def _read_all(self, conn: Connection) -> None:
        q = self.queries
        schema = self.context.pg.settings.search_schema
        facts = self._read(conn, "connections", lambda: q.server_facts(conn))
        sessions = self._read(conn, "connections", lambda: q.sessions(conn))
        self._record_sessions(facts, sessions)
        if facts is None:
            self._unavailable("replication_lag", "server facts unreadable")
        else:
            self.series.in_recovery.set(1 if facts.in_recovery else 0)
            self.findings.details["in_recovery"] = facts.in_recovery
            if facts.in_recovery:
                lag = self._read(conn, "replication_lag", lambda: q.replication_lag_seconds(conn))
                self._record_lag(lag)
            else:
                self.series.replication_lag.set(0)
        self._record_xid_age(self._read(conn, "xid_age", lambda: q.oldest_xid_age(conn)))
        self._record_size(self._read(conn, "database_size", lambda: q.database_size_bytes(conn)))
        tables = self._read(conn, "tables", lambda: q.tables(conn, schema, self.options.tables))
        self._record_tables(tables)
        table = self.options.ttl_table
        backlog = self._read(conn, "ttl_backlog", lambda: q.ttl_backlog(conn, schema, table))
        self._record_ttl(backlog)

    def _unavailable(self, figure: str, reason: str) -> None:
        self.findings.unavailable.setdefault(figure, reason)

    # -- recording ---------------------------------------------------------------------------

    def _record_pool(self, pg: PgConnector, before: dict[str, int]) -> None:
        stats = before
        pool = {
            "size": stats.get("pool_size", 0),
            "idle": stats.get("pool_available", 0),
            "waiting": stats.get("requests_waiting", 0),
            "min": stats.get("pool_min", pg.settings.pool_min_size),
            "max": stats.get("pool_max", pg.settings.pool_max_size),
        }
        for state, value in pool.items():
            self.series.pool.labels(state=state).set(value)
        stats = pg.pool_stats()  # the counters as they stand after this run's own request
        for key, counter in self.series.pool_counters.items():
            _advance_counter(counter, stats.get(key, 0) * _POOL_COUNTERS[key][2])
        limit, waited = self.options.max_pool_wait_seconds, self._pool_wait_seconds
        self.series.pool_wait.set(waited)
        self.findings.details["pool"] = {
            **pool,
            "requests_errors": stats.get("requests_errors", 0),
            "connections_lost": stats.get("connections_lost", 0),
            "requests_wait_seconds": stats.get("requests_wait_ms", 0) / 1000,
        }
        self.findings.details.update(
            pool_wait_seconds=round(waited, 6), max_pool_wait_seconds=limit
        )
        waiting = f" ({pool['waiting']} requests waiting)" if pool["waiting"] else ""
        if self._pool_exhausted:
            self.findings.problems.append(
                f"pool of {pool['size']}/{pool['max']} gave no connection within "
                f"max_pool_wait_seconds {limit:g}{waiting}"
            )
        elif waited > limit:
            self.findings.problems.append(
                f"pool wait {waited:.2f} s above max_pool_wait_seconds {limit:g}{waiting}"
            )

    def _record_sessions(
        self, facts: queries.ServerFacts | None, sessions: queries.Sessions | None
    ) -> None:
        opts, details, problems = self.options, self.findings.details, self.findings.problems
        session_figures = ("longest_transaction", "idle_in_transaction", "lock_waiting_sessions")
        if facts is None or sessions is None:
            for gauge in (self.series.longest_transaction, self.series.idle_in_transaction):
                gauge.set(math.nan)
            self.series.lock_waiting.set(math.nan)
            for figure in session_figures:
                self._unavailable(figure, "sessions unreadable")
            return
        for state, count in sessions.by_state.items():
            self.series.connections.labels(state=state).set(count)
        self.series.max_connections.set(facts.max_connections)
        ratio = sessions.total / facts.max_connections
        details["connections"] = dict(sessions.by_state)
        details.update(
            connections_total=sessions.total,
            max_connections=facts.max_connections,
            connections_ratio=round(ratio, 4),
            max_connections_ratio=opts.max_connections_ratio,
        )
        if ratio > opts.max_connections_ratio:
            problems.append(
                f"{sessions.total} of max_connections {facts.max_connections} in use "
                f"({ratio:.0%}), above max_connections_ratio {opts.max_connections_ratio:g}"
            )
        if not facts.reads_all_stats:
            # Other roles' sessions show no state or start times without pg_read_all_stats.
            for gauge in (self.series.longest_transaction, self.series.idle_in_transaction):
                gauge.set(math.nan)
            self.series.lock_waiting.set(math.nan)
            for figure in session_figures:
                self._unavailable(figure, "other roles' sessions need pg_monitor")
            return
        longest = sessions.longest_transaction_seconds
        self.series.longest_transaction.set(longest)
        details.update(
            longest_transaction_seconds=round(longest, 3),
            longest_transaction_pid=sessions.longest_transaction_pid,
            max_transaction_seconds=opts.max_transaction_seconds,
        )
        if longest > opts.max_transaction_seconds:
            problems.append(
                f"transaction open {longest:.1f} s (pid {sessions.longest_transaction_pid}) "
                f"above max_transaction_seconds {opts.max_transaction_seconds:g}"
            )
        idle = sessions.longest_idle_in_transaction_seconds
        self.series.idle_in_transaction.set(idle)
        details.update(
            idle_in_transaction_seconds=round(idle, 3),
            idle_in_transaction_pid=sessions.longest_idle_in_transaction_pid,
            max_idle_in_transaction_seconds=opts.max_idle_in_transaction_seconds,
        )
        if idle > opts.max_idle_in_transaction_seconds:
            problems.append(
                f"session idle in transaction {idle:.1f} s "
                f"(pid {sessions.longest_idle_in_transaction_pid}) above "
                f"max_idle_in_transaction_seconds {opts.max_idle_in_transaction_seconds:g}"
            )
        self.series.lock_waiting.set(sessions.lock_waiting)
        details.update(
            lock_waiting_sessions=sessions.lock_waiting,
            max_lock_waiting_sessions=opts.max_lock_waiting_sessions,
        )
        if sessions.lock_waiting > opts.max_lock_waiting_sessions:
            problems.append(
                f"{sessions.lock_waiting} sessions waiting on locks, above "
                f"max_lock_waiting_sessions {opts.max_lock_waiting_sessions}"
            )

    def _record_lag(self, lag: float | None) -> None:
        limit = self.options.max_replication_lag_seconds
        if lag is None:
            self.series.replication_lag.set(math.nan)
            self._unavailable("replication_lag", "WAL outstanding but nothing replayed yet")
            return
        self.series.replication_lag.set(lag)
        self.findings.details["replication_lag_seconds"] = round(lag, 3)
        self.findings.details["max_replication_lag_seconds"] = limit
        if lag > limit:
            self.findings.problems.append(
                f"replication lag {lag:.1f} s above max_replication_lag_seconds {limit:g}"
            )

    def _record_xid_age(self, oldest: tuple[str, int] | None) -> None:
        if oldest is None:
            self.series.xid_age.set(math.nan)
            return
        database, age = oldest
        limit = self.options.max_xid_age
        self.series.xid_age.set(age)
        self.findings.details.update(xid_age=age, xid_age_database=database, max_xid_age=limit)
        if age > limit:
            self.findings.problems.append(
                f"transaction ID age {age} of database {database} above max_xid_age {limit}"
            )

    def _record_size(self, size: int | None) -> None:
        if size is None:
            self.series.database_size.set(math.nan)
            return
        limit = self.options.max_database_size_bytes
        self.series.database_size.set(size)
        self.findings.details.update(database_size_bytes=size, max_database_size_bytes=limit)
        if limit and size > limit:
            self.findings.problems.append(
                f"database size {size} bytes above max_database_size_bytes {limit}"
            )

    def _record_tables(self, tables: queries.Tables | None) -> None:
        if tables is None:
            return
        opts, s = self.options, self.series
        report: dict[str, Any] = {}
        crowded: list[str] = []
        for name, stats in tables.found.items():
            s.live_rows.labels(table=name).set(stats.live_rows)
            s.dead_rows.labels(table=name).set(stats.dead_rows)
            if stats.size_bytes is not None:
                s.table_size.labels(table=name).set(stats.size_bytes)
            s.last_vacuum.labels(table=name).set(stats.last_vacuum_timestamp or 0)
            s.last_analyze.labels(table=name).set(stats.last_analyze_timestamp or 0)
            ratio = stats.dead_rows / max(stats.live_rows, 1)
            report[name] = {
                "live_rows": stats.live_rows,
                "dead_rows": stats.dead_rows,
                "dead_rows_ratio": round(ratio, 4),
                "size_bytes": stats.size_bytes,
                "last_vacuum_timestamp": stats.last_vacuum_timestamp,
                "last_analyze_timestamp": stats.last_analyze_timestamp,
            }
            if stats.dead_rows >= opts.min_dead_rows and ratio > opts.max_dead_rows_ratio:
                crowded.append(f"{name} {stats.dead_rows} dead of {stats.live_rows} live")
        self.findings.details.update(
            tables=report,
            max_dead_rows_ratio=opts.max_dead_rows_ratio,
            min_dead_rows=opts.min_dead_rows,
        )
        if crowded:
            self.findings.problems.append(
                f"dead rows above max_dead_rows_ratio {opts.max_dead_rows_ratio:g}: "
                + ", ".join(crowded)
            )
        if tables.missing:
            self.findings.details["tables_missing"] = tables.missing
            self._unavailable("tables", "not found: " + ", ".join(tables.missing))

    def _record_ttl(self, backlog: queries.TtlBacklog | None) -> None:
        if backlog is None:
            return
        opts, table = self.options, self.options.ttl_table
        self.series.ttl_expired.labels(table=table).set(backlog.expired_rows)
        self.series.ttl_oldest.labels(table=table).set(backlog.oldest_expired_age_seconds)
        self.findings.details["ttl"] = {
            "table": table,
            "expired_rows": backlog.expired_rows,
            "expired_rows_exact": backlog.exact,
            "max_ttl_expired_rows": opts.max_ttl_expired_rows,
            "oldest_expired_age_seconds": round(backlog.oldest_expired_age_seconds, 3),
            "max_ttl_expired_age_seconds": opts.max_ttl_expired_age_seconds,
        }
        if opts.max_ttl_expired_rows and backlog.expired_rows > opts.max_ttl_expired_rows:
            about = "" if backlog.exact else "about "
            self.findings.problems.append(
                f"{about}{backlog.expired_rows} expired rows in {table} above max_ttl_expired_rows "
                f"{opts.max_ttl_expired_rows}"
            )
        if backlog.oldest_expired_age_seconds > opts.max_ttl_expired_age_seconds:
            self.findings.problems.append(
                f"oldest expired row in {table} expired "
                f"{backlog.oldest_expired_age_seconds:.0f} s ago, above "
                f"max_ttl_expired_age_seconds {opts.max_ttl_expired_age_seconds:g}"
            )


def _advance_counter(counter: Any, total: float) -> None:
    """Bring a counter up to ``total``, a running count kept elsewhere (psycopg_pool's)."""
    collect = getattr(counter, "collect", None)
    if collect is None:  # NullMetrics
        return
    current = next(
        (s.value for family in collect() for s in family.samples if s.name.endswith("_total")),
        0.0,
    )
    if total > current:
        counter.inc(total - current)


def _ms(seconds: float) -> str:
    return str(max(int(seconds * 1000), 1))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""The catalog and statistics queries of ``pg-health``, one function per figure.

Imported only when the check runs, so listing jobs or running a DynamoDB job never loads psycopg.

Each reads what ``pg_monitor`` (``pg_read_all_stats``, ``pg_read_all_settings``) plus SELECT
on ActingWeb's tables can see, and returns plain values. Connections count every client
backend, the check's own included; durations and lock waits leave the check's own session out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from awops.ttl_backlog import measure as measure_backlog

Connection = psycopg.Connection[Any]

# pg_stat_activity.state values and the label each is exported under.
SESSION_STATES = {
    "active": "active",
    "idle": "idle",
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction_aborted",
    "fastpath function call": "fastpath_function_call",
    "disabled": "disabled",
}
# What makes one figure unreadable rather than the server unreachable: a missing privilege,
# function or table, or the statement_timeout or lock_timeout the check sets.
UNREADABLE: tuple[type[Exception], ...] = (
    psycopg.ProgrammingError,
    psycopg.NotSupportedError,
    psycopg.DataError,
    psycopg.InternalError,
    psycopg.errors.QueryCanceled,
    psycopg.errors.LockNotAvailable,
)
# Sessions whose state the caller may not see (another role's, without pg_read_all_stats).
UNKNOWN_STATE = "unknown"


@dataclass
class ServerFacts:
    max_connections: int
    in_recovery: bool
    reads_all_stats: bool  # member of pg_read_all_stats (pg_monitor) or superuser
    version_num: int  # server_version_num, e.g. 150004


@dataclass
class Sessions:
    by_state: dict[str, int]
    lock_waiting: int
    longest_transaction_seconds: float
    longest_transaction_pid: int | None
    longest_idle_in_transaction_seconds: float
    longest_idle_in_transaction_pid: int | None

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass
class TableStats:
    live_rows: int
    dead_rows: int
    last_vacuum_timestamp: float | None  # epoch seconds of the later of manual and autovacuum
    last_analyze_timestamp: float | None
    size_bytes: int | None  # None while the table is locked exclusively
    mod_since_analyze_rows: int  # rows inserted, updated or deleted since the last analyze
    vacuum_age_seconds: float | None  # by the server's clock; None: never vacuumed
    analyze_age_seconds: float | None


@dataclass
class Tables:
    found: dict[str, TableStats] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


class DatabaseCounters(NamedTuple):
    """``pg_stat_database`` counters of the current database, since its statistics reset."""

    database: str
    deadlocks: int
    conflicts: int  # queries cancelled by recovery conflicts (on a replica)
    conflicts_by_reason: dict[str, int]


@dataclass
class TtlBacklog:
    expired_rows: int
    exact: bool  # False: at least ttl_backlog.COUNT_CAP rows, the planner's estimate
    oldest_expired_age_seconds: float  # 0 when nothing is expired


def one_row(conn: Connection, query: Any, params: Any = None) -> tuple[Any, ...]:
    row = conn.execute(query, params).fetchone()
    if row is None:  # every query here is an aggregate or a function call: always one row
        raise psycopg.DataError("the query returned no row")
    return tuple(row)


def server_facts(conn: Connection) -> ServerFacts:
    row = one_row(
        conn,
        "SELECT current_setting('max_connections')::int, pg_is_in_recovery(),"
        " pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER'),"
        " current_setting('server_version_num')::int",
    )
    return ServerFacts(
        max_connections=row[0], in_recovery=row[1], reads_all_stats=row[2], version_num=row[3]
    )


_SESSIONS = """
SELECT state, wait_event_type, pid, pid = pg_backend_pid(),
       extract(epoch FROM clock_timestamp() - xact_start)::float8,
       CASE WHEN state LIKE 'idle in transaction%'
            THEN extract(epoch FROM clock_timestamp() - state_change)::float8 END
FROM pg_stat_activity
WHERE backend_type = 'client backend'
"""


def sessions(conn: Connection) -> Sessions:
    by_state = dict.fromkeys([*SESSION_STATES.values(), UNKNOWN_STATE], 0)
    lock_waiting = 0
    longest: tuple[float, int | None] = (0.0, None)
    longest_idle: tuple[float, int | None] = (0.0, None)
    for state, wait_event_type, pid, own, xact_seconds, idle_seconds in conn.execute(_SESSIONS):
        by_state[SESSION_STATES.get(state, UNKNOWN_STATE)] += 1
        if own:  # counted as a connection, but its own transaction is not a finding
            continue
        if wait_event_type == "Lock":
            lock_waiting += 1
        if xact_seconds is not None and xact_seconds > longest[0]:
            longest = (xact_seconds, pid)
        if idle_seconds is not None and idle_seconds > longest_idle[0]:
            longest_idle = (idle_seconds, pid)
    return Sessions(
        by_state=by_state,
        lock_waiting=lock_waiting,
        longest_transaction_seconds=longest[0],
        longest_transaction_pid=longest[1],
        longest_idle_in_transaction_seconds=longest_idle[0],
        longest_idle_in_transaction_pid=longest_idle[1],
    )


def replication_lag_seconds(conn: Connection) -> float | None:
    """Seconds the replayed state trails the primary; 0 when everything received is replayed.

    None when WAL is outstanding but no transaction has been replayed yet to date it by.
    """
    caught_up, since_replay = one_row(
        conn,
        "SELECT pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),"
        " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8",
    )
    if caught_up:
        return 0.0
    return None if since_replay is None else max(float(since_replay), 0.0)


def oldest_xid_age(conn: Connection) -> tuple[str, int]:
    """The database nearest transaction-ID wraparound and its ``age(datfrozenxid)``."""
    row = one_row(
        conn, "SELECT datname, age(datfrozenxid) FROM pg_database ORDER BY 2 DESC LIMIT 1"
    )
    return str(row[0]), int(row[1])


def oldest_multixact_age(conn: Connection) -> tuple[str, int]:
    """The database nearest multixact-ID wraparound and its ``mxid_age(datminmxid)``."""
    row = one_row(
        conn, "SELECT datname, mxid_age(datminmxid) FROM pg_database ORDER BY 2 DESC LIMIT 1"
    )
    return str(row[0]), int(row[1])


_COUNTERS = """
SELECT d.datname, d.deadlocks, d.conflicts, c.confl_tablespace, c.confl_lock,
       c.confl_snapshot, c.confl_bufferpin, c.confl_deadlock
FROM pg_stat_database d JOIN pg_stat_database_conflicts c ON c.datid = d.datid
WHERE d.datname = current_database()
"""
_CONFLICT_REASONS = ("tablespace", "lock", "snapshot", "bufferpin", "deadlock")


def database_counters(conn: Connection) -> DatabaseCounters:
    database, deadlocks, conflicts, *by_reason = one_row(conn, _COUNTERS)
    return DatabaseCounters(
        str(database),
        int(deadlocks),
        int(conflicts),
        {reason: int(count) for reason, count in zip(_CONFLICT_REASONS, by_reason, strict=True)},
    )


def database_size_bytes(conn: Connection) -> int:
    return int(one_row(conn, "SELECT pg_database_size(current_database())")[0])


# Statistics take no lock; the size does, so it is skipped (None) for a table locked exclusively
# (a migration, VACUUM FULL) rather than queueing the whole check behind it.
_TABLES = """
SELECT relname, n_live_tup, n_dead_tup,
       extract(epoch FROM greatest(last_vacuum, last_autovacuum))::float8,
       extract(epoch FROM greatest(last_analyze, last_autoanalyze))::float8,
       CASE WHEN EXISTS (SELECT FROM pg_locks l WHERE l.relation = s.relid
                         AND l.mode = 'AccessExclusiveLock' AND l.granted)
            THEN NULL ELSE pg_total_relation_size(relid) END,
       n_mod_since_analyze,
       extract(epoch FROM clock_timestamp() - greatest(last_vacuum, last_autovacuum))::float8,
       extract(epoch FROM clock_timestamp() - greatest(last_analyze, last_autoanalyze))::float8
FROM pg_stat_all_tables s
WHERE schemaname = %s AND relname = ANY(%s)
"""


def tables(conn: Connection, schema: str, names: list[str]) -> Tables:
    result = Tables()
    rows = conn.execute(_TABLES, (schema, names))
    for name, live, dead, vacuumed, analyzed, size, modified, vacuum_age, analyze_age in rows:
        result.found[name] = TableStats(
            int(live),
            int(dead),
            vacuumed,
            analyzed,
            None if size is None else int(size),
            mod_since_analyze_rows=int(modified),
            vacuum_age_seconds=vacuum_age,
            analyze_age_seconds=analyze_age,
        )
    result.missing = [name for name in names if name not in result.found]
    return result


def ttl_backlog(conn: Connection, schema: str, table: str) -> TtlBacklog:
    """Rows whose ``ttl_timestamp`` is past by the database's clock, read as pg-ttl-purge reads
    them (exact up to a cap, then the planner's estimate)."""
    # Whole seconds as the check always read them (rounded), for the cutoff and the age alike.
    (now,) = one_row(conn, "SELECT extract(epoch FROM now())::bigint")
    column = sql.Identifier("ttl_timestamp")
    backlog = measure_backlog(
        conn,
        sql.Identifier(schema, table),
        column,
        sql.SQL("{col} IS NOT NULL AND {col} < %(now)s").format(col=column),
        {"now": int(now)},
    )
    age = float(int(now) - backlog.oldest) if backlog.oldest is not None else 0.0
    return TtlBacklog(backlog.rows, backlog.exact, age)

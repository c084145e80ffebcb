"""The thresholds of ``pg-health``: its keys under ``[jobs.pg-health]``.

Imported at start-up by every command that validates the configuration, so it imports nothing
beyond the settings helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

from awops.actingweb import PG_TABLES
from awops.settings import MAX_PG_TIMEOUT_SECONDS, pg_identifier, pg_identifier_list, setting

ACTINGWEB_TABLES = list(PG_TABLES)


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
    max_lock_wait_seconds: float = setting(
        60.0, minimum=0, doc="a session waiting longer than this for a lock is a problem"
    )
    max_new_deadlocks: int = setting(
        0, minimum=0, doc="more deadlocks than this since the daemon's previous run is a problem"
    )
    max_new_conflicts: int = setting(
        0,
        minimum=0,
        doc="more recovery conflicts (cancelled queries on a replica) than this since the "
        "daemon's previous run is a problem",
    )
    max_replication_lag_seconds: float = setting(
        30.0, minimum=0, doc="on a replica, replay further behind than this is a problem"
    )
    max_xid_age: int = setting(
        1_000_000_000,
        minimum=0,
        doc="age(datfrozenxid) of any database above this is a problem (wraparound near 2.1e9)",
    )
    max_multixact_age: int = setting(
        1_000_000_000,
        minimum=0,
        doc="mxid_age(datminmxid) of any database above this is a problem (wraparound near 2.1e9)",
    )
    max_archive_failing_seconds: float = setting(
        300.0,
        minimum=0,
        doc="WAL archiving whose latest attempt failed, with a WAL file waiting longer than this, "
        "is a problem",
    )
    max_archive_age_seconds: float = setting(
        3600.0,
        minimum=0,
        doc="WAL waiting to be archived with no file archived for longer than this is a problem",
    )
    max_inactive_slots: int = setting(
        0, minimum=0, doc="more replication slots than this with no consumer is a problem"
    )
    max_slot_retained_wal_ratio: float = setting(
        0.8,
        minimum=0,
        doc="a slot retaining more WAL than this share of max_slot_wal_keep_size (or, unlimited, "
        "of max_wal_size) is a problem",
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
    max_vacuum_age_seconds: float = setting(
        0.0,
        minimum=0,
        doc="a table with at least min_dead_rows dead rows not vacuumed for longer than this is "
        "a problem; 0 means no limit",
    )
    max_mod_since_analyze_ratio: float = setting(
        0.5,
        minimum=0,
        doc="a table with more rows changed since its last analyze than this share of its live "
        "rows is a problem (autoanalyze acts at 0.1)",
    )
    min_mod_since_analyze_rows: int = setting(
        10000,
        minimum=0,
        doc="fewer rows changed since the last analyze than this never count against "
        "max_mod_since_analyze_ratio or max_analyze_age_seconds",
    )
    max_analyze_age_seconds: float = setting(
        0.0,
        minimum=0,
        doc="a table with at least min_mod_since_analyze_rows changed rows not analyzed for "
        "longer than this is a problem; 0 means no limit",
    )
    tables: list[str] = setting(
        ACTINGWEB_TABLES,
        check=pg_identifier_list,
        doc="tables whose rows, vacuums and analyzes are read",
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

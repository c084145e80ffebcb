"""The table to purge, resolved and checked, and which of its rows are expired.

Every read here waits at most ``lock_timeout_ms`` for the table: a session holding it in
ACCESS EXCLUSIVE mode (ALTER TABLE, VACUUM FULL, LOCK TABLE) makes the run an error that names
the lock and its holder, instead of a run that hangs until its timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from awops import ttl_backlog
from awops.errors import JobError

if TYPE_CHECKING:
    from awops.jobs.pg_ttl_purge import PgTtlPurgeOptions
    from awops.pg import Connection

INTEGER_TYPES = ("smallint", "integer", "bigint")
# pg_current_xact_id (13); TID range scans, which the heap walk's block ranges need (14).
MIN_SERVER_VERSION = 130000
TID_RANGE_SCAN_VERSION = 140000
# Table lock modes that block a read (ACCESS SHARE) and a batch's DELETE (ROW EXCLUSIVE).
BLOCKS_READS = ("AccessExclusiveLock",)
BLOCKS_DELETES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")


@dataclass(frozen=True)
class PurgeTable:
    """The resolved table and what walks it allows."""

    schema: str
    table: str
    column: str
    index: str | None  # None: no btree index leads with the column (allow_seq_scan)
    blocks: int
    rows_estimate: float
    tid_range_scans: bool  # PostgreSQL 14+: the heap walk's block ranges are TID range scans

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def table_sql(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.table)

    @property
    def column_sql(self) -> sql.Composable:
        return sql.Identifier(self.column)


@dataclass(frozen=True)
class Expiry:
    """Which rows are expired: a ttl before ``cutoff``, read once per run from the database's
    clock (``now``), and a bucket among ``buckets`` when any are named."""

    cutoff: int
    now: int
    buckets: tuple[str, ...] = ()

    def condition(self, table: PurgeTable) -> sql.Composed:
        """The SQL condition; its parameters come from :meth:`params`."""
        clause = sql.SQL("{col} IS NOT NULL AND {col} < %(cutoff)s").format(col=table.column_sql)
        if self.buckets:
            clause = sql.SQL("{} AND bucket = ANY(%(buckets)s)").format(clause)
        return clause

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "buckets": list(self.buckets), **extra}


@dataclass(frozen=True)
class Survey:
    """What a run starts from."""

    table: PurgeTable
    expiry: Expiry
    backlog: ttl_backlog.Backlog

    @property
    def oldest_age_seconds(self) -> int:
        """Database time minus the oldest expired ttl; 0 when nothing is expired."""
        oldest = self.backlog.oldest
        return max(self.expiry.now - oldest, 0) if oldest is not None else 0


def survey(conn: Connection, options: PgTtlPurgeOptions, search_schema: str) -> Survey:
    """Resolve the table, read the database's clock and measure the backlog."""
    with waiting_at_most(conn, options.table, options.lock_timeout_ms):
        table = resolve_table(conn, options, search_schema)
        row = conn.execute("SELECT floor(extract(epoch FROM now()))::bigint").fetchone()
        assert row is not None
        now = int(row[0])
        expiry = Expiry(now - options.grace_seconds, now, tuple(options.buckets))
        backlog = ttl_backlog.measure(
            conn, table.table_sql, table.column_sql, expiry.condition(table), expiry.params()
        )
    return Survey(table, expiry, backlog)


def count_expired(
    conn: Connection, table: PurgeTable, expiry: Expiry, limit: int, lock_timeout_ms: int
) -> int:
    """The expired rows, all of them or at most ``limit`` (0: no limit): what a run would
    delete."""
    inner = sql.SQL("SELECT 1 FROM {tbl} WHERE {where}").format(
        tbl=table.table_sql, where=expiry.condition(table)
    )
    if limit:
        inner = sql.SQL("{} LIMIT {}").format(inner, sql.Literal(limit))
    with waiting_at_most(conn, table.table, lock_timeout_ms):
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM ({}) s").format(inner), expiry.params()
        ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def waiting_at_most(conn: Connection, table: str, lock_timeout_ms: int) -> Iterator[None]:
    """A transaction whose lock waits end at ``lock_timeout_ms``; a lock on ``table`` (in the
    connection's schema) held past it becomes a :class:`JobError` that names it."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_timeout_ms}ms",))
            yield
    except psycopg.errors.LockNotAvailable:
        raise table_locked(conn, table, lock_timeout_ms, BLOCKS_READS) from None


def table_locked(
    conn: Connection, table: str, lock_timeout_ms: int, modes: tuple[str, ...]
) -> JobError:
    """The error for a wait on ``table``'s lock that ran past ``lock_timeout_ms``, naming the
    sessions that hold (or wait ahead of us for) a lock of ``modes`` on it now."""
    rows = conn.execute(
        """SELECT l.pid, l.mode, l.granted FROM pg_locks l
           WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid() AND l.mode = ANY(%s)
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.relation = (SELECT c.oid FROM pg_class c
                               JOIN pg_namespace n ON n.oid = c.relnamespace
                               WHERE n.nspname = current_schema() AND c.relname = %s)
           ORDER BY NOT l.granted, l.pid""",
        (list(modes), table),
    ).fetchall()
    schema_row = conn.execute("SELECT current_schema()").fetchone()
    qualified = f"{schema_row[0] if schema_row else '?'}.{table}"
    holders = [
        f"pid {pid} {'holds' if granted else 'waits for'} {mode}" for pid, mode, granted in rows
    ]
    who = ", ".join(holders) if holders else "released since"
    return JobError(
        f"pg-ttl-purge: {qualified} is locked by another session beyond lock_timeout_ms "
        f"{lock_timeout_ms} ({who}); the next run carries on"
    )


def resolve_table(conn: Connection, options: PgTtlPurgeOptions, search_schema: str) -> PurgeTable:
    """Find the table in the connection's schema and refuse anything unsafe to purge."""
    if conn.info.server_version < MIN_SERVER_VERSION:
        raise JobError(
            "pg-ttl-purge needs PostgreSQL 13 or newer (pg_current_xact_id); this server is "
            f"{conn.info.server_version // 10000}; nothing deleted"
        )
    row = conn.execute("SELECT current_schema()").fetchone()
    schema = row[0] if row else None
    if schema is None:
        raise JobError(f"pg-ttl-purge: schema {search_schema!r} does not exist")
    row = conn.execute(
        """SELECT c.oid, c.relkind,
                  pg_relation_size(c.oid) / current_setting('block_size')::int, c.reltuples
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s""",
        (schema, options.table),
    ).fetchone()
    qualified = f"{schema}.{options.table}"
    if row is None:
        raise JobError(f"pg-ttl-purge: table {qualified} does not exist; nothing deleted")
    table_oid, relkind, blocks, reltuples = row
    if relkind != "r":
        kind = "a partitioned table" if relkind == "p" else "not a plain table"
        raise JobError(f"pg-ttl-purge: {qualified} is {kind}; nothing deleted")
    row = conn.execute(
        """SELECT attnum, format_type(atttypid, NULL) FROM pg_attribute
           WHERE attrelid = %s AND attname = %s AND attnum > 0 AND NOT attisdropped""",
        (table_oid, options.column),
    ).fetchone()
    if row is None:
        raise JobError(
            f"pg-ttl-purge: column {options.column!r} does not exist in {qualified}; "
            "nothing deleted"
        )
    attnum, type_name = row
    if type_name not in INTEGER_TYPES:
        raise JobError(
            f"pg-ttl-purge: column {qualified}.{options.column} is {type_name}, expected an "
            "integer type holding Unix epoch seconds; nothing deleted"
        )
    if options.buckets:
        has_bucket = conn.execute(
            """SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = 'bucket'
               AND attnum > 0 AND NOT attisdropped""",
            (table_oid,),
        ).fetchone()
        if has_bucket is None:
            raise JobError(
                f"pg-ttl-purge: buckets is set but {qualified} has no column 'bucket'; "
                "nothing deleted"
            )
    # A btree whose leading key is the column; a partial one (ActingWeb's
    # idx_attributes_ttl ... WHERE ttl_timestamp IS NOT NULL) serves, as our queries
    # imply its predicate.
    row = conn.execute(
        """SELECT ic.relname FROM pg_index i
           JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_am am ON am.oid = ic.relam
           WHERE i.indrelid = %s AND i.indkey[0] = %s AND i.indisvalid AND i.indisready
             AND am.amname = 'btree'
           ORDER BY i.indpred IS NULL, ic.relname LIMIT 1""",
        (table_oid, attnum),
    ).fetchone()
    index = row[0] if row else None
    if index is None and not options.allow_seq_scan:
        raise JobError(
            f"pg-ttl-purge: no btree index on {qualified}({options.column}); every batch "
            "would scan the whole table. Create one (ActingWeb's idx_attributes_ttl) or set "
            "allow_seq_scan = true; nothing deleted"
        )
    # reltuples is -1 until the first VACUUM or ANALYZE; then guess from the size.
    rows_estimate = float(reltuples) if reltuples > 0 else float(blocks) * 40
    return PurgeTable(
        schema,
        options.table,
        options.column,
        index,
        int(blocks),
        rows_estimate,
        tid_range_scans=conn.info.server_version >= TID_RANGE_SCAN_VERSION,
    )

"""How batches go through the expired rows, and the SQL of one batch.

A batch deletes only rows whose ``xmax`` is 0, that is rows no transaction holds locked or is
deleting or updating, so it never queues behind the application. The few rows with an
``xmax`` (held now, or once locked or touched by a transaction that rolled back) go in the same
transaction through ``FOR UPDATE SKIP LOCKED``: those still held are left to a later run.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from psycopg import sql

from awops.errors import JobError
from awops.purge.target import Expiry, PurgeTable
from awops.purge.tuning import HEAP_WALK_MIN_FRACTION

if TYPE_CHECKING:
    from awops.jobs.pg_ttl_purge import PgTtlPurgeOptions
    from awops.pg import Connection

# The heap walk goes through the table in block ranges of at most this many blocks. The
# first range is small enough (2 MiB of heap) to be quick on any server.
INITIAL_BLOCKS_PER_BATCH = 256
MAX_BLOCKS_PER_BATCH = 100_000
# Where a batch's DELETE notes (transaction-locally) the ctids of rows it passed over for
# having an xmax; past HELD_NOTE_MAX_CHARS it notes only "*": go over the batch again.
HELD_NOTE = "awops.purge_held"
HELD_NOTE_MAX_CHARS = 8000
# Below every row's ctid (line pointers count from 1): the index walk's first position.
BEFORE_FIRST_CTID = "(0,0)"


@dataclass(frozen=True)
class BatchSpan:
    """One batch's share of the walk: ``size`` rows from the index position (``start``,
    ``after_ctid``) on (the index walk), or ``size`` blocks from block ``start`` (the heap walk).
    """

    start: int
    size: int
    after_ctid: str = BEFORE_FIRST_CTID  # the index walk: of rows with ttl ``start``, those after


@dataclass
class BatchResult:
    """What one batch did. ``scanned`` and the last position are the index walk's: the
    candidates it took in (ttl, ctid) order, and the last of them."""

    deleted: int
    scanned: int
    last_ttl: int | None = None
    last_ctid: str | None = None
    held_checked: int = 0  # expired rows with an xmax, taken by FOR UPDATE SKIP LOCKED
    held_skipped: int = 0  # of those, rows other sessions held, left to a later run


class Walk(ABC):
    """How batches go through the expired rows; batch sizes are in ``unit``s, from ``low`` to
    ``high``. Each row falls in exactly one batch, so the rows a run counts are distinct."""

    name: ClassVar[str]
    unit: ClassVar[str]

    def __init__(
        self, table: PurgeTable, expiry: Expiry, low: int, high: int, initial_size: int
    ) -> None:
        self.table = table
        self.expired = expiry.condition(table)
        self.low, self.high, self.initial_size = low, high, initial_size
        self.finished = False
        self.lock = threading.Lock()

    @abstractmethod
    def describe(self) -> str:
        """For the log: which way the walk goes."""

    @abstractmethod
    def claim(self, size: int, remaining_rows: int) -> BatchSpan | None:
        """The next batch, or None when the walk is done; ``remaining_rows`` 0 = no limit."""

    @abstractmethod
    def split(self, span: BatchSpan) -> BatchSpan | None:
        """The first half of a batch that took too long, giving the rest back; None: too small."""

    @abstractmethod
    def span_params(self, span: BatchSpan) -> dict[str, Any]:
        """The parameters of the batch's statements that place it in the walk."""

    @abstractmethod
    def delete_statement(self) -> sql.Composed:
        """Delete the batch's expired rows that nobody holds (see ``_free``)."""

    @abstractmethod
    def held_statement(self) -> sql.Composed:
        """The batch's expired rows that have an xmax: lock those nobody holds now (SKIP
        LOCKED) and delete them; report (deleted, seen)."""

    @abstractmethod
    def advance(self, span: BatchSpan, result: BatchResult) -> None:
        """Move past a batch that committed."""

    def reached_ttl(self) -> int | None:
        """The ttl the walk has reached, when it walks in ttl order."""
        return None

    def delete_batch(self, conn: Connection, params: dict[str, Any]) -> BatchResult:
        """The statements of one batch, inside its transaction."""
        cursor = conn.execute(self.delete_statement(), params)
        # A plain DELETE (the heap walk) reports only its row count.
        row = cursor.fetchone() if cursor.description else None
        if row is None:
            result = BatchResult(cursor.rowcount, cursor.rowcount)
        else:
            result = BatchResult(int(row[0]), int(row[1]), row[2], row[3])
        note = conn.execute("SELECT current_setting(%s)", (HELD_NOTE,)).fetchone()
        passed_over = note[0] if note else ""
        if passed_over:
            # Mostly rows a revocation deleted since the batch began, gone already: a TID
            # scan of the few noted rows settles them; too many to note, the batch's range.
            if passed_over.startswith("*"):
                last = {"last_ttl": result.last_ttl, "last_ctid": result.last_ctid}
                held = conn.execute(self.held_statement(), {**params, **last})
            else:
                held = conn.execute(self.noted_held_statement(), {**params, "noted": passed_over})
            gone, seen = held.fetchone() or (0, 0)
            result.deleted += int(gone)
            result.held_checked = int(seen)
            result.held_skipped = int(seen) - int(gone)
        return result

    def noted_held_statement(self) -> sql.Composed:
        """``held_statement`` for the rows the DELETE noted (``%(noted)s``): a TID scan."""
        return self._lock_and_delete(
            sql.SQL(
                "SELECT ctid FROM {tbl} WHERE ctid = ANY (string_to_array(rtrim(%(noted)s), ' ')"
                "::tid[]) AND {expired} AND xmax <> '0'::xid"
            ).format(tbl=self.table.table_sql, expired=self.expired)
        )

    def _free(self) -> sql.Composed:
        """True for a row whose xmax is 0 (or the xid of one of our own rolled-back batches):
        no transaction holds it locked, deletes or updates it, so deleting it waits for
        nobody. Any other row it passes over, it notes in HELD_NOTE (its ctid, or "*" once the
        note is long), for ``noted_held_statement``. The planner tests cheaper conditions (the
        expiry) first, so noted rows are expired ones. A row locked in the instant between
        this test and its delete is waited for, at most lock_timeout_ms, and skipped on the
        redo."""
        note = sql.Literal(HELD_NOTE)
        return sql.SQL(
            "(xmax = '0'::xid OR xmax = ANY (%(ours)s::text[]::xid[]) OR set_config({note}, CASE "
            "WHEN length(current_setting({note})) < {most} "
            "THEN current_setting({note}) || ctid::text || ' ' ELSE '*' END, true) IS NULL)"
        ).format(note=note, most=sql.Literal(HELD_NOTE_MAX_CHARS))

    def _lock_and_delete(self, held: sql.Composable) -> sql.Composed:
        """Lock the ``held`` candidates nobody holds now and delete them, by ctid (a TID scan).
        ``expired`` is tested again: a TID scan does not recheck a row the application
        updated meanwhile, and its new version may have a ttl in the future."""
        return sql.SQL(
            """WITH held AS MATERIALIZED ({held}),
               locked AS MATERIALIZED (
                   SELECT ctid FROM {tbl}
                   WHERE ctid = ANY (ARRAY(SELECT ctid FROM held)) AND {expired}
                   FOR UPDATE SKIP LOCKED
               ),
               gone AS (
                   DELETE FROM {tbl} WHERE ctid = ANY (ARRAY(SELECT ctid FROM locked))
                   RETURNING 1
               )
               SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM held)"""
        ).format(held=held, tbl=self.table.table_sql, expired=self.expired)


class IndexWalk(Walk):
    """Keyset walk along the ttl index in (ttl, ctid) order: each batch starts after the last
    row the previous one took in, so it never rescans the dead entries earlier batches left
    behind, nor takes in again the rows other sessions held, however many share one ttl. One
    session: each batch's start depends on the previous batch."""

    name = "index"
    unit = "rows"

    def __init__(
        self, table: PurgeTable, expiry: Expiry, options: PgTtlPurgeOptions, oldest: int
    ) -> None:
        low = options.min_batch_size
        high = max(options.max_batch_size, low)
        super().__init__(table, expiry, low, high, min(max(options.initial_batch_size, low), high))
        self.after = (oldest, BEFORE_FIRST_CTID)

    def describe(self) -> str:
        return f"walking index {self.table.index}"

    def claim(self, size: int, remaining_rows: int) -> BatchSpan | None:
        if self.finished:
            return None
        ttl, ctid = self.after
        return BatchSpan(ttl, min(size, remaining_rows) if remaining_rows else size, ctid)

    def split(self, span: BatchSpan) -> BatchSpan | None:
        if span.size <= self.low:
            return None
        return BatchSpan(span.start, max(span.size // 2, self.low), span.after_ctid)

    def span_params(self, span: BatchSpan) -> dict[str, Any]:
        return {"start": span.start, "after_ctid": span.after_ctid, "limit": span.size}

    def _after_start(self) -> sql.Composed:
        # The index condition is the ttl bound; the ctid narrows the start's own ttl.
        return sql.SQL(
            "{col} >= %(start)s AND ({col} > %(start)s OR ctid > %(after_ctid)s::tid)"
        ).format(col=self.table.column_sql)

    def delete_statement(self) -> sql.Composed:
        # ORDER BY + LIMIT makes the candidates an index range scan (its ties sorted by ctid);
        # they are deleted by ctid (a TID scan visits the heap in physical order), their
        # expiry tested again (see _lock_and_delete).
        return sql.SQL(
            """WITH batch AS (
                   SELECT ctid, {col} AS ttl FROM {tbl}
                   WHERE {after_start} AND {expired} ORDER BY {col}, ctid LIMIT %(limit)s
               ),
               gone AS (
                   DELETE FROM {tbl}
                   WHERE ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND {expired} AND {free}
                   RETURNING 1
               ),
               last AS (SELECT ttl, ctid FROM batch ORDER BY ttl DESC, ctid DESC LIMIT 1)
               SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM batch),
                      (SELECT ttl FROM last), (SELECT ctid::text FROM last)"""
        ).format(
            col=self.table.column_sql,
            tbl=self.table.table_sql,
            after_start=self._after_start(),
            expired=self.expired,
            free=self._free(),
        )

    def held_statement(self) -> sql.Composed:
        return self._lock_and_delete(
            sql.SQL(
                "SELECT ctid FROM {tbl} WHERE {after_start} AND {col} <= %(last_ttl)s "
                "AND ({col} < %(last_ttl)s OR ctid <= %(last_ctid)s::tid) "
                "AND {expired} AND xmax <> '0'::xid"
            ).format(
                col=self.table.column_sql,
                tbl=self.table.table_sql,
                after_start=self._after_start(),
                expired=self.expired,
            )
        )

    def advance(self, span: BatchSpan, result: BatchResult) -> None:
        if result.scanned < span.size or result.last_ttl is None or result.last_ctid is None:
            self.finished = True
        else:
            self.after = (int(result.last_ttl), result.last_ctid)

    def reached_ttl(self) -> int | None:
        return None if self.finished else self.after[0]


class HeapWalk(Walk):
    """Walk the table in block ranges (TID range scans), for a backlog so large that visiting
    pages in index order would touch each page once per expired row instead of once; also the
    walk when no index covers the column (allow_seq_scan). Sessions claim disjoint ranges."""

    name = "heap"
    unit = "blocks"

    def __init__(self, table: PurgeTable, expiry: Expiry, workers: int) -> None:
        super().__init__(table, expiry, 1, MAX_BLOCKS_PER_BATCH, INITIAL_BLOCKS_PER_BATCH)
        self.workers = workers
        self.next_block = 0
        self.returned: list[BatchSpan] = []
        self.finished = table.blocks == 0

    def describe(self) -> str:
        return f"walking the heap ({self.table.blocks} blocks)"

    def claim(self, size: int, remaining_rows: int) -> BatchSpan | None:
        with self.lock:
            if self.returned:
                return self.returned.pop()
            left = self.table.blocks - self.next_block
            if left <= 0:
                self.finished = True
                return None
            if self.workers > 1:
                # Ranges shrink toward the end (to an eighth), so the sessions finish together
                # instead of one working alone through a last full-size batch.
                size = max(self.low, size // 8, min(size, -(-left // (2 * self.workers))))
            span = BatchSpan(self.next_block, size)
            self.next_block += size
            return span

    def split(self, span: BatchSpan) -> BatchSpan | None:
        if span.size <= self.low:
            return None
        half = span.size // 2
        with self.lock:
            self.returned.append(BatchSpan(span.start + half, span.size - half))
        return BatchSpan(span.start, half)

    def span_params(self, span: BatchSpan) -> dict[str, Any]:
        return {"start": span.start, "limit": span.size}

    def advance(self, span: BatchSpan, result: BatchResult) -> None:
        pass  # claim() moved past the range already

    def _range(self) -> sql.Composed:
        return sql.SQL(
            "ctid >= format('(%%s,0)', %(start)s::bigint)::tid "
            "AND ctid < format('(%%s,0)', %(start)s::bigint + %(limit)s)::tid AND {expired}"
        ).format(expired=self.expired)

    def delete_statement(self) -> sql.Composed:
        # One pass over the range: a TID range scan feeding the DELETE itself.
        return sql.SQL("DELETE FROM {tbl} WHERE {where} AND {free}").format(
            tbl=self.table.table_sql, where=self._range(), free=self._free()
        )

    def held_statement(self) -> sql.Composed:
        return self._lock_and_delete(
            sql.SQL("SELECT ctid FROM {tbl} WHERE {where} AND xmax <> '0'::xid").format(
                tbl=self.table.table_sql, where=self._range()
            )
        )


def choose_walk(
    table: PurgeTable, expiry: Expiry, options: PgTtlPurgeOptions, backlog: int, oldest: int
) -> Walk:
    """The walk ``options.walk`` names, or for ``auto`` the one that suits the backlog."""
    walk = options.walk
    if walk == "index" and table.index is None:
        raise JobError(
            f"pg-ttl-purge: walk = 'index' but no btree index covers "
            f"{table.qualified}({table.column})"
        )
    if walk == "auto":
        large = backlog >= HEAP_WALK_MIN_FRACTION * max(table.rows_estimate, 1)
        heap = table.index is None or (large and table.tid_range_scans)
        walk = "heap" if heap else "index"
    if walk == "heap" and not table.tid_range_scans:
        raise JobError(
            "pg-ttl-purge: walking the heap (walk = 'heap', or no index) needs PostgreSQL 14 "
            "or newer (TID range scans); nothing deleted"
        )
    if walk == "heap":
        return HeapWalk(table, expiry, options.workers)
    return IndexWalk(table, expiry, options, oldest)

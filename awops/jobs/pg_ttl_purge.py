"""``pg-ttl-purge``: delete expired rows of ActingWeb's ``attributes`` in short batches.

ActingWeb's own purge is one ``DELETE ... WHERE ttl_timestamp < now``: one transaction that
locks every expired row until it commits and blocks the application's token revocations. This
job deletes the same rows, and only those, in batches that are each their own short
transaction:

* the cutoff is the **database's** ``now()`` minus ``grace_seconds``, read once per run;
* a batch deletes only rows whose ``xmax`` is 0, that is rows no transaction holds locked or is
  deleting or updating, so it never queues behind the application. The few rows with an
  ``xmax`` (held now, or once locked or touched by a transaction that rolled back) go in the
  same transaction through ``FOR UPDATE SKIP LOCKED``: those still held are left to a later run;
* a normal backlog is walked along ``idx_attributes_ttl`` with a keyset (the highest
  ``ttl_timestamp`` of the previous batch), so a batch never rescans the dead index entries
  earlier batches left; a large one in block ranges, by several sessions at once;
* the batch size follows ``batch_target_ms`` (aiming a little under it), and
  ``statement_timeout`` cuts off a batch that runs long anyway, so the time any lock is held
  stays bounded.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from awops import ttl_backlog
from awops.abc import Job
from awops.errors import BackendUnavailable, JobError
from awops.registry import register
from awops.result import Outcome
from awops.settings import pg_identifier, setting

if TYPE_CHECKING:
    from psycopg import sql

    from awops.pg import Connection

# psycopg is imported inside functions: every awops command imports every job module, and
# psycopg costs more at start-up than the rest of awops together.

logger = logging.getLogger(__name__)

INTEGER_TYPES = ("smallint", "integer", "bigint")
BATCH_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5)
# The heap walk goes through the table in block ranges of at most this many blocks. The
# first range is small enough (2 MiB of heap) to be quick on any server.
INITIAL_BLOCKS_PER_BATCH = 256
MAX_BLOCKS_PER_BATCH = 100_000
# Auto walk: through the heap when at least this fraction of the table is expired (a page in
# index order is visited once per expired row on it; in heap order once), else the index.
HEAP_WALK_MIN_FRACTION = 0.1
# A batch that hit lock_timeout is rolled back and redone this many times before the run
# stops: a row locked in the instant between its check and its delete is skipped on the redo,
# a table another session holds locked is not.
LOCK_TIMEOUT_REDOS = 2
# A smallest batch that hits statement_timeout is retried with twice the timeout, up to this
# many times the configured one.
MAX_STATEMENT_TIMEOUT_TARGETS = 16
# statement_timeout of a batch when statement_timeout_ms is 0: this many batch_target_ms.
STATEMENT_TIMEOUT_TARGETS = 1.5
# Batch sizes aim at this fraction of batch_target_ms. On a busy server one size's time spreads
# by half again (in bench.purge 3,456 blocks took 71-117 ms), and aimed at the target itself
# the longest batches ran into statement_timeout (in 7 of 31 bench trials), losing their work.
BATCH_AIM_FRACTION = 0.8
# Where a batch's DELETE notes (transaction-locally) the ctids of rows it passed over for
# having an xmax; past HELD_NOTE_MAX_CHARS it notes only "*": go over the batch again.
HELD_NOTE = "awops.purge_held"
HELD_NOTE_MAX_CHARS = 8000
# The xids of this many of the run's rolled-back batches are known free (PurgeRun).
ROLLED_BACK_XIDS_KEPT = 64
# pg_current_xact_id (13); TID range scans, which the heap walk's block ranges need (14).
MIN_SERVER_VERSION = 130000
TID_RANGE_SCAN_VERSION = 140000
# Leave the runner this long between our last batch and the run's timeout_seconds.
DEADLINE_MARGIN_SECONDS = 5.0


def _bucket_list(value: Any) -> str | None:
    if not all(isinstance(item, str) and item for item in value):
        return "a list of non-empty bucket names"
    return None


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class PgTtlPurgeOptions:
    table: str = setting("attributes", check=pg_identifier, doc="table to purge")
    column: str = setting(
        "ttl_timestamp", check=pg_identifier, doc="integer column holding the expiry (epoch s)"
    )
    grace_seconds: int = setting(
        0, minimum=0, doc="keep rows this long past their ttl (cutoff = database now() - grace)"
    )
    batch_target_ms: int = setting(
        100,
        minimum=1,
        maximum=60_000,
        doc=f"batch sizes adapt toward this transaction time (aiming at {BATCH_AIM_FRACTION:.0%} "
        "of it, so their spread stays under statement_timeout)",
    )
    initial_batch_size: int = setting(2000, minimum=1, doc="rows in the first batch")
    min_batch_size: int = setting(100, minimum=1, doc="batches never shrink below this")
    max_batch_size: int = setting(100_000, minimum=1, doc="batches never grow beyond this")
    max_rows_per_run: int = setting(0, minimum=0, doc="stop after this many rows; 0 = no limit")
    max_seconds_per_run: float = setting(
        480.0, minimum=1, doc="start no batch after this long (the next run carries on)"
    )
    lock_timeout_ms: int = setting(
        50,
        minimum=1,
        doc="SET LOCAL lock_timeout of each batch: the longest it waits for the table lock, or "
        "for a row locked in the instant between its check and its delete; the batch is then "
        f"redone (at most {LOCK_TIMEOUT_REDOS} times, then the run stops with an error)",
    )
    statement_timeout_ms: int = setting(
        0,
        minimum=0,
        doc="SET LOCAL statement_timeout of each batch; a batch hitting it is rolled back and "
        f"retried at half the size; 0 = {STATEMENT_TIMEOUT_TARGETS:g} x batch_target_ms, so no "
        "transaction runs far past the target",
    )
    buckets: list[str] = setting(
        [], check=_bucket_list, doc="only rows of these buckets (attributes.bucket); empty = all"
    )
    allow_seq_scan: bool = setting(
        False, doc="run even when no index covers the column (walks the heap instead)"
    )
    walk: str = setting(
        "auto",
        choices=("auto", "index", "heap"),
        doc="index: keyset walk along the ttl index; heap: block ranges; auto: heap when at "
        f"least {HEAP_WALK_MIN_FRACTION:.0%} of the table is expired, else index",
    )
    workers: int = setting(
        2,
        minimum=1,
        maximum=16,
        doc="sessions deleting disjoint block ranges at once in a heap walk (a large backlog); "
        "the index walk uses one",
    )
    progress_interval_seconds: float = setting(
        10.0, minimum=0.1, doc="log progress this often on long runs"
    )


@dataclass
class Target:
    """The resolved table and how to walk it."""

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
        from psycopg import sql

        return sql.Identifier(self.schema, self.table)

    @property
    def column_sql(self) -> sql.Composable:
        from psycopg import sql

        return sql.Identifier(self.column)


@dataclass
class Progress:
    deleted: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0
    held_checked: int = 0  # expired rows with an xmax, taken by FOR UPDATE SKIP LOCKED
    held_skipped: int = 0  # of those, rows the application held, left to a later run
    lock_timeouts: int = 0  # batches rolled back at lock_timeout and redone
    statement_timeouts: int = 0  # batches rolled back at statement_timeout and retried
    walk_finished: bool = False
    stop_reason: str = ""
    walk: str = ""


class _Interrupted(Exception):
    """The run was asked to stop (SIGTERM or timeout) between batches."""


@register
class PgTtlPurge(Job):
    name = "pg-ttl-purge"
    backend = "postgresql"
    description = "deletes expired attributes rows in short, lock-skipping batches"
    default_schedule = "every 10m"
    default_timeout_seconds = 900.0
    changes_data = True
    Options = PgTtlPurgeOptions

    def _run(self) -> Outcome:
        options: PgTtlPurgeOptions = self.options
        metrics = self.context.metrics
        self._purged = metrics.counter(
            "awops_pg_ttl_purged_rows_total", "Expired rows deleted by pg-ttl-purge", ["table"]
        ).labels(table=options.table)
        # After a run the backlog is what it was less the rows deleted, and the oldest age
        # that of the first row the walk has not reached.
        self._backlog = metrics.gauge(
            "awops_pg_ttl_expired_rows", ttl_backlog.EXPIRED_ROWS_HELP, ["table"]
        ).labels(table=options.table)
        self._oldest = metrics.gauge(
            "awops_pg_ttl_oldest_expired_age_seconds", ttl_backlog.OLDEST_AGE_HELP, ["table"]
        ).labels(table=options.table)
        self._held_skipped = metrics.counter(
            "awops_pg_ttl_held_rows_skipped_total",
            "Expired rows pg-ttl-purge left to a later run: the application held them locked",
            ["table"],
        ).labels(table=options.table)
        self._lock_timeouts = metrics.counter(
            "awops_pg_ttl_lock_timeouts_total",
            "pg-ttl-purge batches rolled back at lock_timeout_ms (another session held a lock)",
            ["table"],
        ).labels(table=options.table)
        self._batch_duration = metrics.histogram(
            "awops_pg_ttl_batch_duration_seconds",
            "Wall time of one pg-ttl-purge batch transaction",
            ["table"],
            BATCH_DURATION_BUCKETS,
        ).labels(table=options.table)

        progress = Progress()
        dry_run = self.context.dry_run
        try:
            with self.context.pg.connection() as conn:
                self.context.on_cancel(lambda: conn.cancel_safe(timeout=2.0))
                target = self._resolve(conn)
                cutoff, now = self._cutoff(conn)
                measured = ttl_backlog.measure(
                    conn,
                    target.table_sql,
                    target.column_sql,
                    self._expired_filter(target),
                    self._params(cutoff),
                )
                backlog, oldest = measured.rows, measured.oldest
                self._backlog.set(backlog)
                self._oldest.set(max(now - oldest, 0) if oldest is not None else 0)
                details: dict[str, Any] = {
                    "dry_run": dry_run,
                    "table": target.qualified,
                    "cutoff": cutoff,
                    "index": target.index,
                }
                if dry_run:
                    would = self._count_expired(conn, target, cutoff)
                    summary = (
                        f"dry run: would delete {would} expired rows of {target.qualified} "
                        f"(ttl before {cutoff})"
                    )
                    return Outcome.ok(summary, deleted=0, would_delete=would, **details)
                if oldest is not None:
                    self._purge(conn, target, cutoff, oldest, backlog, progress)
                else:
                    progress.walk_finished = True
        except _Interrupted:
            remaining = max(backlog - progress.deleted, 0)
            self._backlog.set(remaining)
            return Outcome.error(
                f"stopped on request after deleting {progress.deleted} rows in "
                f"{progress.batches} batches of {target.qualified}; the next run carries on",
                deleted=progress.deleted,
                batches=progress.batches,
                longest_batch_seconds=round(progress.longest_batch_seconds, 4),
                complete=False,
                **details,
            )
        except JobError as exc:
            logger.error("%s failed: %s", self.name, exc)
            summary = str(exc)
            if isinstance(exc, BackendUnavailable):
                summary += (
                    f" (after deleting {progress.deleted} rows in {progress.batches} batches; "
                    "every batch is its own transaction, the next run carries on)"
                )
            return Outcome.error(
                summary,
                deleted=progress.deleted,
                batches=progress.batches,
                dry_run=dry_run,
                complete=False,
            )

        remaining = 0 if progress.walk_finished else max(backlog - progress.deleted, 0)
        self._backlog.set(remaining)
        if progress.walk_finished:
            self._oldest.set(0)
        summary = (
            f"deleted {progress.deleted} expired rows of {target.qualified} in "
            f"{progress.batches} batch{'es' if progress.batches != 1 else ''}"
        )
        if not progress.walk_finished:
            summary += f"; stopped at {progress.stop_reason}, the next run carries on"
        return Outcome.ok(
            summary,
            deleted=progress.deleted,
            batches=progress.batches,
            longest_batch_seconds=round(progress.longest_batch_seconds, 4),
            held_checked=progress.held_checked,
            held_skipped=progress.held_skipped,
            lock_timeouts=progress.lock_timeouts,
            statement_timeouts=progress.statement_timeouts,
            complete=progress.walk_finished,
            walk=progress.walk,
            **details,
        )

    def _resolve(self, conn: Connection) -> Target:
        """Find the table in the connection's schema and refuse anything unsafe to purge."""
        options: PgTtlPurgeOptions = self.options
        wanted_schema = self.context.pg.settings.search_schema
        if conn.info.server_version < MIN_SERVER_VERSION:
            raise JobError(
                "pg-ttl-purge needs PostgreSQL 13 or newer (pg_current_xact_id); this server is "
                f"{conn.info.server_version // 10000}; nothing deleted"
            )
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = row[0] if row else None
        if schema is None:
            raise JobError(f"pg-ttl-purge: schema {wanted_schema!r} does not exist")
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
        return Target(
            schema,
            options.table,
            options.column,
            index,
            int(blocks),
            rows_estimate,
            tid_range_scans=conn.info.server_version >= TID_RANGE_SCAN_VERSION,
        )

    def _cutoff(self, conn: Connection) -> tuple[int, int]:
        """The database's clock, never the host's: (cutoff, now) in epoch seconds."""
        row = conn.execute("SELECT floor(extract(epoch FROM now()))::bigint").fetchone()
        assert row is not None
        now = int(row[0])
        return now - self.options.grace_seconds, now

    def _expired_filter(self, target: Target) -> sql.Composed:
        from psycopg import sql

        clause = sql.SQL("{col} IS NOT NULL AND {col} < %(cutoff)s").format(col=target.column_sql)
        if self.options.buckets:
            clause = sql.SQL("{} AND bucket = ANY(%(buckets)s)").format(clause)
        return clause

    def _params(self, cutoff: int, **extra: Any) -> dict[str, Any]:
        return {"cutoff": cutoff, "buckets": list(self.options.buckets), **extra}

    def _count_expired(self, conn: Connection, target: Target, cutoff: int) -> int:
        from psycopg import sql

        limit = self.options.max_rows_per_run
        inner = sql.SQL("SELECT 1 FROM {tbl} WHERE {where}").format(
            tbl=target.table_sql, where=self._expired_filter(target)
        )
        if limit:
            inner = sql.SQL("{} LIMIT {}").format(inner, sql.Literal(limit))
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM ({}) s").format(inner), self._params(cutoff)
        ).fetchone()
        return int(row[0]) if row else 0

    def _choose_walk(self, target: Target, backlog: int, oldest: int) -> Walk:
        options: PgTtlPurgeOptions = self.options
        walk = options.walk
        if walk == "index" and target.index is None:
            raise JobError(
                f"pg-ttl-purge: walk = 'index' but no btree index covers "
                f"{target.qualified}({target.column})"
            )
        if walk == "auto":
            large = backlog >= HEAP_WALK_MIN_FRACTION * max(target.rows_estimate, 1)
            heap = target.index is None or (large and target.tid_range_scans)
            walk = "heap" if heap else "index"
        if walk == "heap" and not target.tid_range_scans:
            raise JobError(
                "pg-ttl-purge: walking the heap (walk = 'heap', or no index) needs PostgreSQL 14 "
                "or newer (TID range scans); nothing deleted"
            )
        if walk == "heap":
            return HeapWalk(target, self._expired_filter(target), options.workers)
        return IndexWalk(target, self._expired_filter(target), options, oldest)

    def _purge(
        self,
        conn: Connection,
        target: Target,
        cutoff: int,
        oldest: int,
        backlog: int,
        progress: Progress,
    ) -> None:
        options: PgTtlPurgeOptions = self.options
        walk = self._choose_walk(target, backlog, oldest)
        progress.walk = walk.name
        workers = options.workers if isinstance(walk, HeapWalk) else 1
        run = PurgeRun(
            cutoff=cutoff,
            backlog=backlog,
            started=time.monotonic(),
            deadline=min(
                time.monotonic() + options.max_seconds_per_run,
                self.context.deadline - DEADLINE_MARGIN_SECONDS,
            ),
            progress=progress,
        )
        logger.info(
            "purging %s: ttl before %d (database clock), about %d expired, %s%s",
            target.qualified,
            cutoff,
            backlog,
            walk.describe(),
            f" with {workers} sessions" if workers > 1 else "",
        )
        threads = [
            threading.Thread(
                # in a copy of this context, so the helpers' log lines carry the job and run id
                target=contextvars.copy_context().run,
                args=(self._helper, walk, run),
                name=f"awops-ttl-purge-{n}",
                daemon=True,
            )
            for n in range(1, workers)
        ]
        for thread in threads:
            thread.start()
        try:
            self._work(conn, walk, run)
        except BaseException as exc:
            run.fail(exc)
        for thread in threads:
            thread.join()
        if run.failure is not None:
            raise run.failure
        progress.walk_finished = walk.finished and not progress.stop_reason

    def _helper(self, walk: Walk, run: PurgeRun) -> None:
        """A further session of the heap walk, on a pooled connection of its own."""
        try:
            with self.context.pg.connection() as conn:
                self.context.on_cancel(lambda: conn.cancel_safe(timeout=2.0))
                self._work(conn, walk, run)
        except BaseException as exc:
            run.fail(exc)

    def _work(self, conn: Connection, walk: Walk, run: PurgeRun) -> None:
        """Run batches until the walk is done, a limit is reached, or the run must stop."""
        import psycopg

        options: PgTtlPurgeOptions = self.options
        target_seconds = options.batch_target_ms / 1000 * BATCH_AIM_FRACTION
        base_timeout_ms = options.statement_timeout_ms or round(
            STATEMENT_TIMEOUT_TARGETS * options.batch_target_ms
        )
        timeout_ms = base_timeout_ms
        size = walk.initial_size
        claim: Claim | None = None
        redos = 0
        while True:
            if self.context.stop_event.is_set():
                raise _Interrupted
            if claim is None:  # else redo the batch that was rolled back
                if not run.may_continue(options):
                    return
                remaining_rows = (
                    options.max_rows_per_run - run.progress.deleted
                    if options.max_rows_per_run
                    else 0
                )
                claim = walk.claim(size, remaining_rows)
                if claim is None:
                    return
            batch_started = time.perf_counter()
            try:
                batch = self._run_batch(conn, walk, run, claim, timeout_ms)
            except psycopg.errors.LockNotAvailable:
                redos += 1
                run.lock_timed_out()
                self._lock_timeouts.inc()
                if redos <= LOCK_TIMEOUT_REDOS:
                    logger.debug("a batch waited lock_timeout_ms for a lock; redoing it")
                    continue
                raise JobError(
                    f"pg-ttl-purge: {walk.target.qualified} is locked by another session "
                    f"beyond lock_timeout_ms {options.lock_timeout_ms}; the next run carries on"
                ) from None
            except psycopg.errors.QueryCanceled:
                if self.context.stop_event.is_set():
                    raise _Interrupted from None
                run.statement_timed_out()
                smaller = walk.split(claim)
                if smaller is not None:
                    claim, size = smaller, smaller.size
                    logger.warning("a batch hit statement_timeout; retrying with %d", size)
                    continue
                # Already the smallest batch (an index crowded with dead entries, a server
                # under load): give it more time rather than give up on the run.
                timeout_ms *= 2
                if timeout_ms > MAX_STATEMENT_TIMEOUT_TARGETS * base_timeout_ms:
                    raise JobError(
                        f"pg-ttl-purge: a batch of {claim.size} {walk.unit} of "
                        f"{walk.target.qualified} ran past statement_timeout even at "
                        f"{timeout_ms // 2} ms"
                    ) from None
                logger.warning(
                    "a smallest batch hit statement_timeout; retrying at %d ms", timeout_ms
                )
                continue
            except psycopg.OperationalError as exc:
                text = str(exc).strip().splitlines()
                raise BackendUnavailable(
                    f"PostgreSQL {self.context.pg.target}: "
                    f"{text[0] if text else type(exc).__name__}"
                ) from None
            elapsed = time.perf_counter() - batch_started
            logger.debug(
                "batch of %d %s from %d: %d rows in %.1f ms",
                claim.size,
                walk.unit,
                claim.start,
                batch.deleted,
                elapsed * 1000,
            )
            redos, timeout_ms = 0, base_timeout_ms
            walk.advance(claim, batch.scanned, batch.highest)
            claim = None
            self._purged.inc(batch.deleted)
            self._held_skipped.inc(batch.held_skipped)
            self._batch_duration.observe(elapsed)
            if isinstance(walk, IndexWalk) and not walk.finished:
                self._oldest.set(max(run.cutoff + options.grace_seconds - walk.after, 0))
            size = _next_size(size, elapsed, target_seconds, walk.low, walk.high)
            run.record(batch, elapsed, options.progress_interval_seconds, walk, size)

    def _run_batch(
        self, conn: Connection, walk: Walk, run: PurgeRun, claim: Claim, timeout_ms: int
    ) -> Batch:
        """One batch, one transaction: the rows nobody holds deleted directly, then, if the
        delete passed over rows with an xmax, those of them not locked now via SKIP LOCKED."""
        xid: str | None = None
        try:
            with conn.transaction():
                row = conn.execute(self._batch_settings(timeout_ms)).fetchone()
                xid = row[0] if row else None
                return self._batch_work(conn, walk, run.params(self, claim))
        except Exception:
            # The rows this batch deleted carry its xid in xmax now; they are free again.
            if xid is not None:
                run.rolled_back(xid)
            raise

    def _batch_settings(self, timeout_ms: int) -> sql.Composed:
        from psycopg import sql

        options: PgTtlPurgeOptions = self.options
        # Every batch is a range: of blocks (a TID range scan) or of the index, its rows then
        # deleted by TID. A server or role that turned those plan types off (or one whose
        # statistics favour a scan of the whole table) would make each batch read every row;
        # the planner's switches are set for the batch's transaction only. Its commit does not
        # wait for the WAL flush: a crash can lose only the last moments' deletions, of rows
        # that were expired before and still are, and a later run deletes them again.
        return sql.SQL(
            "SELECT pg_current_xact_id()::xid::text, set_config('lock_timeout', {}, true), "
            "set_config('statement_timeout', {}, true), set_config({}, '', true), "
            "set_config('enable_tidscan', 'on', true), set_config('enable_indexscan', 'on', true), "
            "set_config('enable_seqscan', 'off', true), "
            "set_config('synchronous_commit', 'off', true)"
        ).format(
            sql.Literal(f"{options.lock_timeout_ms}ms"),
            sql.Literal(f"{timeout_ms}ms"),
            sql.Literal(HELD_NOTE),
        )

    def _batch_work(self, conn: Connection, walk: Walk, params: dict[str, Any]) -> Batch:
        """The statements of one batch, inside its transaction."""
        cursor = conn.execute(walk.delete_statement(), params)
        # A plain DELETE (the heap walk) reports only its row count.
        row = cursor.fetchone() if cursor.description else None
        if row is None:
            batch = Batch(cursor.rowcount, cursor.rowcount, None)
        else:
            batch = Batch(int(row[0]), int(row[1]), row[2])
        note = conn.execute("SELECT current_setting(%s)", (HELD_NOTE,)).fetchone()
        passed_over = note[0] if note else ""
        if passed_over:
            # Mostly rows a revocation deleted since the batch began, gone already: a TID
            # scan of the few noted rows settles them; too many to note, the batch's range.
            if passed_over.startswith("*"):
                held = conn.execute(walk.held_statement(), {**params, "highest": batch.highest})
            else:
                held = conn.execute(walk.noted_held_statement(), {**params, "noted": passed_over})
            gone, seen = held.fetchone() or (0, 0)
            batch.deleted += int(gone)
            batch.held_checked = int(seen)
            batch.held_skipped = int(seen) - int(gone)
        return batch


@dataclass
class Batch:
    """What one batch did: rows deleted, candidates scanned (index walk), their highest ttl."""

    deleted: int
    scanned: int
    highest: Any
    held_checked: int = 0
    held_skipped: int = 0


@dataclass
class Claim:
    """One batch's share of the walk: a keyset start and row limit, or a block range."""

    start: int
    size: int


@dataclass
class PurgeRun:
    """State the sessions of one run share."""

    cutoff: int
    backlog: int
    started: float
    deadline: float
    progress: Progress
    failure: BaseException | None = None
    next_progress_log: float = 0.0
    # Our batches that rolled back (statement_timeout, lock_timeout): their xid stays in the
    # xmax of the rows they had deleted, which no one else has touched since.
    rolled_back_xids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def params(self, job: PgTtlPurge, claim: Claim) -> dict[str, Any]:
        with self.lock:
            ours = list(self.rolled_back_xids)
        return job._params(self.cutoff, start=claim.start, limit=claim.size, ours=ours)

    def rolled_back(self, xid: str) -> None:
        with self.lock:
            self.rolled_back_xids.append(xid)
            del self.rolled_back_xids[:-ROLLED_BACK_XIDS_KEPT]

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.failure is None or isinstance(self.failure, _Interrupted):
                self.failure = exc

    def lock_timed_out(self) -> None:
        with self.lock:
            self.progress.lock_timeouts += 1

    def statement_timed_out(self) -> None:
        with self.lock:
            self.progress.statement_timeouts += 1

    def may_continue(self, options: PgTtlPurgeOptions) -> bool:
        with self.lock:
            if self.failure is not None:
                return False
            if options.max_rows_per_run and self.progress.deleted >= options.max_rows_per_run:
                self.progress.stop_reason = f"max_rows_per_run {options.max_rows_per_run}"
                return False
            if time.monotonic() >= self.deadline:
                self.progress.stop_reason = "max_seconds_per_run or the run's timeout"
                return False
            return True

    def record(self, batch: Batch, elapsed: float, interval: float, walk: Walk, size: int) -> None:
        with self.lock:
            progress = self.progress
            progress.batches += 1
            progress.deleted += batch.deleted
            progress.held_checked += batch.held_checked
            progress.held_skipped += batch.held_skipped
            progress.longest_batch_seconds = max(progress.longest_batch_seconds, elapsed)
            now = time.monotonic()
            if not self.next_progress_log:
                self.next_progress_log = self.started + interval
            if now < self.next_progress_log:
                return
            self.next_progress_log = now + interval
            rate = progress.deleted / max(now - self.started, 1e-6)
            left = max(self.backlog - progress.deleted, 0)
        logger.info(
            "purged %d rows of %s in %d batches (%.0f rows/s, batch %d %s), about %d left "
            "(~%.0f s)",
            progress.deleted,
            walk.target.qualified,
            progress.batches,
            rate,
            size,
            walk.unit,
            left,
            left / rate if rate else 0,
        )


class Walk:
    """How batches go through the expired rows; batch sizes are in ``unit``s."""

    name: str
    unit: str
    low: int
    high: int
    initial_size: int
    finished: bool = False

    def __init__(self, target: Target, expired: sql.Composed) -> None:
        self.target = target
        self.expired = expired
        self.lock = threading.Lock()

    def describe(self) -> str:
        raise NotImplementedError

    def claim(self, size: int, remaining_rows: int) -> Claim | None:
        """The next batch, or None when the walk is done; ``remaining_rows`` 0 = no limit."""
        raise NotImplementedError

    def split(self, claim: Claim) -> Claim | None:
        """The first half of a batch that took too long, giving the rest back; None: too small."""
        raise NotImplementedError

    def delete_statement(self) -> sql.Composed:
        """Delete the batch's expired rows that nobody holds (see ``_free``)."""
        raise NotImplementedError

    def held_statement(self) -> sql.Composed:
        """The batch's expired rows that have an xmax: lock those nobody holds now (SKIP
        LOCKED) and delete them; report (deleted, seen)."""
        raise NotImplementedError

    def advance(self, claim: Claim, scanned: int, highest: Any) -> None:
        pass

    def noted_held_statement(self) -> sql.Composed:
        """``held_statement`` for the rows the DELETE noted (``%(noted)s``): a TID scan."""
        from psycopg import sql

        return self._lock_and_delete(
            sql.SQL(
                "SELECT ctid FROM {tbl} WHERE ctid = ANY (string_to_array(rtrim(%(noted)s), ' ')"
                "::tid[]) AND {expired} AND xmax <> '0'::xid"
            ).format(tbl=self.target.table_sql, expired=self.expired)
        )

    def _free(self) -> sql.Composed:
        """True for a row whose xmax is 0 (or the xid of one of our own rolled-back batches):
        no transaction holds it locked, deletes or updates it, so deleting it waits for
        nobody. Any other row it passes over, it notes in
        HELD_NOTE (its ctid, or "*" once the note is long), for ``noted_held_statement``. The
        planner tests cheaper conditions (the expiry) first, so noted rows are expired ones.
        A row locked in the instant between this test and its delete is waited for, at most
        lock_timeout_ms, and skipped on the redo."""
        from psycopg import sql

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
        from psycopg import sql

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
        ).format(held=held, tbl=self.target.table_sql, expired=self.expired)


class IndexWalk(Walk):
    """Keyset walk along the ttl index: each batch starts at the highest ttl the previous one
    reached, so it never rescans the dead entries earlier batches left behind. One session:
    each batch's start depends on the previous batch."""

    name = "index"
    unit = "rows"

    def __init__(
        self, target: Target, expired: sql.Composed, options: PgTtlPurgeOptions, oldest: int
    ) -> None:
        super().__init__(target, expired)
        self.low = options.min_batch_size
        self.high = max(options.max_batch_size, self.low)
        self.initial_size = min(max(options.initial_batch_size, self.low), self.high)
        self.after = oldest

    def describe(self) -> str:
        return f"walking index {self.target.index}"

    def claim(self, size: int, remaining_rows: int) -> Claim | None:
        if self.finished:
            return None
        return Claim(self.after, min(size, remaining_rows) if remaining_rows else size)

    def split(self, claim: Claim) -> Claim | None:
        if claim.size <= self.low:
            return None
        return Claim(claim.start, max(claim.size // 2, self.low))

    def delete_statement(self) -> sql.Composed:
        from psycopg import sql

        # ORDER BY + LIMIT makes the candidates an index range scan; they are deleted by ctid
        # (a TID scan visits the heap in physical order), their expiry tested again (above).
        return sql.SQL(
            """WITH batch AS (
                   SELECT ctid, {col} AS ttl FROM {tbl}
                   WHERE {col} >= %(start)s AND {expired} ORDER BY {col} LIMIT %(limit)s
               ),
               gone AS (
                   DELETE FROM {tbl}
                   WHERE ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND {expired} AND {free}
                   RETURNING 1
               )
               SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM batch),
                      (SELECT max(ttl) FROM batch)"""
        ).format(
            col=self.target.column_sql,
            tbl=self.target.table_sql,
            expired=self.expired,
            free=self._free(),
        )

    def held_statement(self) -> sql.Composed:
        from psycopg import sql

        return self._lock_and_delete(
            sql.SQL(
                "SELECT ctid FROM {tbl} WHERE {col} >= %(start)s AND {col} <= %(highest)s "
                "AND {expired} AND xmax <> '0'::xid"
            ).format(col=self.target.column_sql, tbl=self.target.table_sql, expired=self.expired)
        )

    def advance(self, claim: Claim, scanned: int, highest: Any) -> None:
        if scanned < claim.size or highest is None:
            self.finished = True
        else:
            self.after = int(highest)


class HeapWalk(Walk):
    """Walk the table in block ranges (TID range scans), for a backlog so large that visiting
    pages in index order would touch each page once per expired row instead of once; also the
    walk when no index covers the column (allow_seq_scan). Sessions claim disjoint ranges."""

    name = "heap"
    unit = "blocks"

    def __init__(self, target: Target, expired: sql.Composed, workers: int) -> None:
        super().__init__(target, expired)
        self.workers = workers
        self.low, self.high = 1, MAX_BLOCKS_PER_BATCH
        self.initial_size = INITIAL_BLOCKS_PER_BATCH
        self.next_block = 0
        self.returned: list[Claim] = []
        self.finished = target.blocks == 0

    def describe(self) -> str:
        return f"walking the heap ({self.target.blocks} blocks)"

    def claim(self, size: int, remaining_rows: int) -> Claim | None:
        with self.lock:
            if self.returned:
                return self.returned.pop()
            left = self.target.blocks - self.next_block
            if left <= 0:
                self.finished = True
                return None
            if self.workers > 1:
                # Ranges shrink toward the end (to an eighth), so the sessions finish together
                # instead of one working alone through a last full-size batch.
                size = max(self.low, size // 8, min(size, -(-left // (2 * self.workers))))
            claim = Claim(self.next_block, size)
            self.next_block += size
            return claim

    def split(self, claim: Claim) -> Claim | None:
        if claim.size <= self.low:
            return None
        half = claim.size // 2
        with self.lock:
            self.returned.append(Claim(claim.start + half, claim.size - half))
        return Claim(claim.start, half)

    def _range(self) -> sql.Composed:
        from psycopg import sql

        return sql.SQL(
            "ctid >= format('(%%s,0)', %(start)s::bigint)::tid "
            "AND ctid < format('(%%s,0)', %(start)s::bigint + %(limit)s)::tid AND {expired}"
        ).format(expired=self.expired)

    def delete_statement(self) -> sql.Composed:
        from psycopg import sql

        # One pass over the range: a TID range scan feeding the DELETE itself.
        return sql.SQL("DELETE FROM {tbl} WHERE {where} AND {free}").format(
            tbl=self.target.table_sql, where=self._range(), free=self._free()
        )

    def held_statement(self) -> sql.Composed:
        from psycopg import sql

        return self._lock_and_delete(
            sql.SQL("SELECT ctid FROM {tbl} WHERE {where} AND xmax <> '0'::xid").format(
                tbl=self.target.table_sql, where=self._range()
            )
        )


def _next_size(size: int, elapsed: float, target: float, low: int, high: int) -> int:
    """Steer the batch size toward ``target`` seconds.

    A batch under a quarter of the target may double the next one: even twice as slow per
    row, that stays under the target (and a small batch's time is mostly its fixed cost, so
    it overstates the cost per row). Nearer the target growth is capped at 1.5x, so one fast
    batch does not push the next one past it. Shrinking (a slow batch means locks held too
    long) may halve at once.
    """
    ideal = size * target / max(elapsed, 1e-4)
    growth = 2.0 if elapsed < target / 4 else 1.5
    return int(min(max(ideal, size / 2, low), max(size * growth, size + 1), high))

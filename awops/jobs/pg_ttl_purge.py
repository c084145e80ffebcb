"""``pg-ttl-purge``: delete expired rows of ActingWeb's ``attributes`` in short batches.

ActingWeb's own purge is one ``DELETE ... WHERE ttl_timestamp < now``: one transaction that
locks every expired row until it commits and blocks the application's token revocations. This
job deletes the same rows, and only those, in batches that are each their own short
transaction:

* the cutoff is the **database's** ``now()`` minus ``grace_seconds``, read once per run;
* each batch locks its rows ``FOR UPDATE SKIP LOCKED`` (rows the application holds are left to
  a later run, never waited for) and deletes them by ``ctid = ANY(array)``, a TID scan that
  visits the heap in physical order;
* batches walk ``idx_attributes_ttl`` with a keyset (the highest ``ttl_timestamp`` of the
  previous batch), so a batch never rescans the dead index entries earlier batches left;
* the batch size follows ``batch_target_ms``, so the time any lock is held stays bounded.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
# The backlog gauge counts expired rows through the index up to this many, then falls back to
# the planner's estimate: exact where it matters (a small backlog), cheap where it is large.
BACKLOG_COUNT_CAP = 100_000
BATCH_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5)
# The heap walk goes through the table in block ranges of at most this many blocks.
INITIAL_BLOCKS_PER_BATCH = 64
MAX_BLOCKS_PER_BATCH = 100_000
# Auto walk: through the heap when at least this fraction of the table is expired (a page in
# index order is visited once per expired row on it; in heap order once), else the index.
HEAP_WALK_MIN_FRACTION = 0.1
# After a direct batch met a row lock, this many batches lock first with SKIP LOCKED.
SKIP_LOCKED_BATCHES_AFTER_CONFLICT = 3
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
        100, minimum=1, maximum=60_000, doc="batch sizes adapt toward this transaction time"
    )
    initial_batch_size: int = setting(2000, minimum=1, doc="rows in the first batch")
    min_batch_size: int = setting(100, minimum=1, doc="batches never shrink below this")
    max_batch_size: int = setting(100_000, minimum=1, doc="batches never grow beyond this")
    max_rows_per_run: int = setting(0, minimum=0, doc="stop after this many rows; 0 = no limit")
    max_seconds_per_run: float = setting(
        480.0, minimum=1, doc="start no batch after this long (the next run carries on)"
    )
    lock_timeout_ms: int = setting(
        1000, minimum=1, doc="SET LOCAL lock_timeout of each batch (table lock waits)"
    )
    statement_timeout_ms: int = setting(
        5000,
        minimum=1,
        doc="SET LOCAL statement_timeout of each batch; a batch hitting it "
        "is retried at half the size",
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
    row_lock_wait_ms: int = setting(
        20,
        minimum=0,
        doc="a batch deletes directly, waiting at most this long for a row the application "
        "holds, then is redone with FOR UPDATE SKIP LOCKED; 0 = always SKIP LOCKED "
        "(every row written twice)",
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
    lock_conflicts: int = 0  # direct batches redone with SKIP LOCKED
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
        self._backlog = metrics.gauge(
            "awops_pg_ttl_expired_rows",
            "Expired rows not yet deleted: counted through the index up to "
            f"{BACKLOG_COUNT_CAP}, else the planner's estimate; after a run, that minus the "
            "rows it deleted",
            ["table"],
        ).labels(table=options.table)
        self._oldest = metrics.gauge(
            "awops_pg_ttl_oldest_expired_age_seconds",
            "Database time minus the ttl of the oldest expired row not yet examined (0: none)",
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
                backlog, oldest = self._measure_backlog(conn, target, cutoff)
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
            lock_conflicts=progress.lock_conflicts,
            complete=progress.walk_finished,
            walk=progress.walk,
            **details,
        )

    def _resolve(self, conn: Connection) -> Target:
        """Find the table in the connection's schema and refuse anything unsafe to purge."""
        options: PgTtlPurgeOptions = self.options
        wanted_schema = self.context.pg.settings.search_schema
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
        return Target(schema, options.table, options.column, index, int(blocks), rows_estimate)

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

    def _measure_backlog(
        self, conn: Connection, target: Target, cutoff: int
    ) -> tuple[int, int | None]:
        """(expired rows, bounded count or estimate; the oldest expired ttl or None)."""
        from psycopg import sql

        where = self._expired_filter(target)
        row = conn.execute(
            sql.SQL("SELECT min({col}) FROM {tbl} WHERE {where}").format(
                col=target.column_sql, tbl=target.table_sql, where=where
            ),
            self._params(cutoff),
        ).fetchone()
        oldest = row[0] if row else None
        if oldest is None:
            return 0, None
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM (SELECT 1 FROM {tbl} WHERE {where} LIMIT {cap}) s"
            ).format(tbl=target.table_sql, where=where, cap=sql.Literal(BACKLOG_COUNT_CAP)),
            self._params(cutoff),
        ).fetchone()
        count = int(row[0]) if row else 0
        if count >= BACKLOG_COUNT_CAP:
            plan = conn.execute(
                sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {tbl} WHERE {where}").format(
                    tbl=target.table_sql, where=where
                ),
                self._params(cutoff),
            ).fetchone()
            if plan is not None:
                count = max(count, int(plan[0][0]["Plan"]["Plan Rows"]))
        return count, int(oldest)

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
            walk = "heap" if target.index is None or large else "index"
        if walk == "heap":
            return HeapWalk(target, self._expired_filter(target))
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
        target_seconds = options.batch_target_ms / 1000
        size = walk.initial_size
        # A plain DELETE writes each row once; locking first (FOR UPDATE SKIP LOCKED) writes
        # it twice. So a batch first deletes directly, allowed to wait row_lock_wait_ms for a
        # row the application holds; past that it is rolled back and redone with SKIP LOCKED,
        # and the following batches of this session skip-lock too for a while.
        optimistic = options.row_lock_wait_ms > 0
        skip_locked_batches_left = 0
        claim: Claim | None = None
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
            direct = optimistic and skip_locked_batches_left == 0
            statement = walk.statement(lock_first=not direct)
            batch_started = time.perf_counter()
            try:
                row = self._run_batch(conn, statement, run.params(self, claim), direct)
            except psycopg.errors.LockNotAvailable:
                if direct:
                    logger.debug("a row or the table was locked; redoing the batch SKIP LOCKED")
                    skip_locked_batches_left = SKIP_LOCKED_BATCHES_AFTER_CONFLICT
                    run.conflict()
                    continue
                raise JobError(
                    f"pg-ttl-purge: {walk.target.qualified} is locked by another session "
                    f"beyond lock_timeout_ms {options.lock_timeout_ms}; the next run carries on"
                ) from None
            except psycopg.errors.QueryCanceled:
                if self.context.stop_event.is_set():
                    raise _Interrupted from None
                smaller = walk.split(claim)
                if smaller is None:
                    raise JobError(
                        f"pg-ttl-purge: a batch of {claim.size} {walk.unit} of "
                        f"{walk.target.qualified} exceeded statement_timeout_ms "
                        f"{options.statement_timeout_ms}"
                    ) from None
                claim, size = smaller, smaller.size
                logger.warning("a batch hit statement_timeout_ms; retrying with %d", size)
                continue
            except psycopg.OperationalError as exc:
                text = str(exc).strip().splitlines()
                raise BackendUnavailable(
                    f"PostgreSQL {self.context.pg.target}: "
                    f"{text[0] if text else type(exc).__name__}"
                ) from None
            elapsed = time.perf_counter() - batch_started
            if skip_locked_batches_left:
                skip_locked_batches_left -= 1
            deleted, scanned, highest = int(row[0]), int(row[1]), row[2]
            walk.advance(claim, scanned, highest)
            claim = None
            self._purged.inc(deleted)
            self._batch_duration.observe(elapsed)
            if isinstance(walk, IndexWalk) and not walk.finished:
                self._oldest.set(max(run.cutoff + options.grace_seconds - walk.after, 0))
            size = _next_size(size, elapsed, target_seconds, walk.low, walk.high)
            run.record(deleted, elapsed, options.progress_interval_seconds, walk, size)

    def _run_batch(
        self, conn: Connection, statement: sql.Composed, params: dict[str, Any], direct: bool
    ) -> tuple[Any, ...]:
        """One batch, one transaction: (rows deleted, rows scanned, highest ttl scanned)."""
        from psycopg import sql

        options: PgTtlPurgeOptions = self.options
        lock_ms = options.row_lock_wait_ms if direct else options.lock_timeout_ms
        settings = sql.SQL(
            "SELECT set_config('lock_timeout', {}, true), set_config('statement_timeout', {}, true)"
        ).format(sql.Literal(f"{lock_ms}ms"), sql.Literal(f"{options.statement_timeout_ms}ms"))
        with conn.transaction():
            conn.execute(settings)
            cursor = conn.execute(statement, params)
            # A plain DELETE (the heap walk's direct batch) reports only its row count.
            row = cursor.fetchone() if cursor.description else None
        if row is None:
            return cursor.rowcount, cursor.rowcount, None
        return tuple(row)


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
    lock: threading.Lock = field(default_factory=threading.Lock)

    def params(self, job: PgTtlPurge, claim: Claim) -> dict[str, Any]:
        return job._params(self.cutoff, start=claim.start, limit=claim.size)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.failure is None or isinstance(self.failure, _Interrupted):
                self.failure = exc

    def conflict(self) -> None:
        with self.lock:
            self.progress.lock_conflicts += 1

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

    def record(self, deleted: int, elapsed: float, interval: float, walk: Walk, size: int) -> None:
        with self.lock:
            progress = self.progress
            progress.batches += 1
            progress.deleted += deleted
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

    def statement(self, lock_first: bool) -> sql.Composed:
        raise NotImplementedError

    def advance(self, claim: Claim, scanned: int, highest: Any) -> None:
        pass

    def _delete(self, candidates: sql.Composable, lock_first: bool) -> sql.Composed:
        """Delete the candidate rows by ctid (a TID scan, heap order); report the counts."""
        from psycopg import sql

        lock = sql.SQL(" FOR UPDATE SKIP LOCKED") if lock_first else sql.SQL("")
        return sql.SQL(
            """WITH batch AS ({candidates}{lock}),
               gone AS (
                   DELETE FROM {tbl} WHERE ctid = ANY (ARRAY(SELECT ctid FROM batch))
                   RETURNING 1
               )
               SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM batch),
                      (SELECT max(ttl) FROM batch)"""
        ).format(candidates=candidates, lock=lock, tbl=self.target.table_sql)


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

    def statement(self, lock_first: bool) -> sql.Composed:
        from psycopg import sql

        # ORDER BY + LIMIT makes this an index range scan; with FOR UPDATE the LockRows node
        # sits below the Limit, so skipped rows do not count against it.
        candidates = sql.SQL(
            "SELECT ctid, {col} AS ttl FROM {tbl} WHERE {col} >= %(start)s AND {expired} "
            "ORDER BY {col} LIMIT %(limit)s"
        ).format(col=self.target.column_sql, tbl=self.target.table_sql, expired=self.expired)
        return self._delete(candidates, lock_first)

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

    def __init__(self, target: Target, expired: sql.Composed) -> None:
        super().__init__(target, expired)
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
            if self.next_block >= self.target.blocks:
                self.finished = True
                return None
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

    def statement(self, lock_first: bool) -> sql.Composed:
        from psycopg import sql

        where = sql.SQL(
            "ctid >= format('(%%s,0)', %(start)s::bigint)::tid "
            "AND ctid < format('(%%s,0)', %(start)s::bigint + %(limit)s)::tid AND {expired}"
        ).format(expired=self.expired)
        if lock_first:
            candidates = sql.SQL("SELECT ctid, {col} AS ttl FROM {tbl} WHERE {where}").format(
                col=self.target.column_sql, tbl=self.target.table_sql, where=where
            )
            return self._delete(candidates, lock_first=True)
        return sql.SQL("DELETE FROM {tbl} WHERE {where}").format(
            tbl=self.target.table_sql, where=where
        )


def _next_size(size: int, elapsed: float, target: float, low: int, high: int) -> int:
    """Steer the batch size toward ``target`` seconds.

    Growth is capped at 1.5x a step so one fast batch does not double the next one past the
    target; shrinking (a slow batch means locks held too long) may halve at once.
    """
    ideal = size * target / max(elapsed, 1e-4)
    return int(min(max(ideal, size / 2, low), max(size * 1.5, size + 1), high))

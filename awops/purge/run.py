"""One purge run: the batch loop of each session, the state the sessions share, batch sizing.

Each batch is its own transaction, bounded by ``lock_timeout`` and ``statement_timeout``;
the batch size follows ``batch_target_ms``. The run stops when the walk is done, at
``max_rows_per_run`` or ``max_seconds_per_run``, when asked to (the context's
``should_stop()``, then :class:`~awops.errors.JobInterrupted`), or when batches keep deleting
nothing because other sessions hold every expired row they reach.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg import sql

from awops.errors import BackendUnavailable, JobError, JobInterrupted
from awops.purge.reclaim import flush_statistics
from awops.purge.target import BLOCKS_DELETES, Expiry, table_locked
from awops.purge.tuning import BATCH_AIM_FRACTION, LOCK_TIMEOUT_REDOS, STATEMENT_TIMEOUT_TARGETS
from awops.purge.walks import HELD_NOTE, BatchResult, BatchSpan, HeapWalk, Walk

if TYPE_CHECKING:
    from awops.context import JobContext
    from awops.jobs.pg_ttl_purge import PgTtlPurgeOptions
    from awops.pg import Connection

logger = logging.getLogger(__name__)

# A smallest batch that hits statement_timeout is retried with twice the timeout, up to this
# many times the configured one.
MAX_STATEMENT_TIMEOUT_TARGETS = 16
# The xids of this many of the run's rolled-back batches are known free (see PurgeRun).
ROLLED_BACK_XIDS_KEPT = 64
# Leave the runner this long between our last batch and the run's timeout_seconds.
DEADLINE_MARGIN_SECONDS = 5.0
# This many batches in a row that deleted nothing, because other sessions held the expired
# rows they reached, stop the run as a problem: something holds rows far longer than the
# application's own short transactions do.
STALLED_BATCHES = 5


@dataclass
class Progress:
    """What a run has done so far, for its outcome."""

    deleted: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0
    held_checked: int = 0  # expired rows with an xmax, taken by FOR UPDATE SKIP LOCKED
    held_skipped: int = 0  # distinct rows other sessions held, left to a later run
    lock_timeouts: int = 0  # batches rolled back at lock_timeout and redone
    statement_timeouts: int = 0  # batches rolled back at statement_timeout and retried
    walk_finished: bool = False
    stop_reason: str = ""  # a limit the run stopped at, with rows left
    problem: str = ""  # why the run stopped short for a reason an operator should look into
    walk: str = ""
    # The batches just before, in a row, that deleted nothing while rows were held, and
    # how many rows they found held.
    batches_deleting_nothing: int = 0
    held_while_deleting_nothing: int = 0


class BatchObserver(Protocol):
    """Told of each batch as it commits (the job's metrics)."""

    def batch_done(self, result: BatchResult, elapsed_seconds: float) -> None: ...

    def lock_timed_out(self) -> None: ...

    def walk_reached(self, oldest_age_seconds: int) -> None: ...


class LockWaitTimedOut(Exception):
    """A batch waited ``lock_timeout`` for a lock and was rolled back: for the table's lock
    (``on_table``) or for a row's."""

    def __init__(self, on_table: bool) -> None:
        super().__init__("table lock" if on_table else "row lock")
        self.on_table = on_table


def batch_settings(lock_timeout_ms: int, statement_timeout_ms: int) -> sql.Composed:
    """The first statement of every batch: its xid, and its settings for its transaction."""
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
        sql.Literal(f"{lock_timeout_ms}ms"),
        sql.Literal(f"{statement_timeout_ms}ms"),
        sql.Literal(HELD_NOTE),
    )


def next_batch_size(size: int, elapsed: float, target: float, low: int, high: int) -> int:
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


class PurgeRun:
    """One run of batches along ``walk``, by one session or (the heap walk) several."""

    def __init__(
        self,
        context: JobContext,
        options: PgTtlPurgeOptions,
        walk: Walk,
        expiry: Expiry,
        backlog: int,
        progress: Progress,
        observer: BatchObserver,
    ) -> None:
        self.context = context
        self.options = options
        self.walk = walk
        self.expiry = expiry
        self.backlog = backlog
        self.progress = progress
        self.observer = observer
        self.started = time.monotonic()
        self.deadline = min(
            self.started + options.max_seconds_per_run,
            context.deadline - DEADLINE_MARGIN_SECONDS,
        )
        self._failure: BaseException | None = None
        self._next_progress_log = self.started + options.progress_interval_seconds
        # Our batches that rolled back (statement_timeout, lock_timeout): their xid stays in
        # the xmax of the rows they had deleted, which no one else has touched since.
        self._rolled_back_xids: list[str] = []
        self._lock = threading.Lock()
        self._lock_table = sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(
            walk.table.table_sql
        )

    def run(self, conn: Connection) -> None:
        """Run batches on ``conn`` (and the heap walk's further sessions) until done."""
        walk, options = self.walk, self.options
        self.progress.walk = walk.name
        workers = options.workers if isinstance(walk, HeapWalk) else 1
        logger.info(
            "purging %s: ttl before %d (database clock), about %d expired, %s%s",
            walk.table.qualified,
            self.expiry.cutoff,
            self.backlog,
            walk.describe(),
            f" with {workers} sessions" if workers > 1 else "",
        )
        threads = [
            threading.Thread(
                # in a copy of this context, so the helpers' log lines carry the job and run id
                target=contextvars.copy_context().run,
                args=(self._helper,),
                name=f"awops-ttl-purge-{n}",
                daemon=True,
            )
            for n in range(1, workers)
        ]
        for thread in threads:
            thread.start()
        try:
            self._work(conn)
            flush_statistics(conn)
        except BaseException as exc:
            self._fail(exc)
        for thread in threads:
            thread.join()
        if self._failure is not None:
            raise self._failure
        progress = self.progress
        progress.walk_finished = walk.finished and not (progress.stop_reason or progress.problem)

    def _helper(self) -> None:
        """A further session of the heap walk, on a pooled connection of its own."""
        try:
            with self.context.pg.connection() as conn:
                self.context.on_cancel(lambda: conn.cancel_safe(timeout=2.0))
                self._work(conn)
                flush_statistics(conn)
        except BaseException as exc:
            self._fail(exc)

    def _work(self, conn: Connection) -> None:
        """Run batches until the walk is done, a limit is reached, or the run must stop."""
        walk, options = self.walk, self.options
        target_seconds = options.batch_target_ms / 1000 * BATCH_AIM_FRACTION
        base_timeout_ms = options.statement_timeout_ms or round(
            STATEMENT_TIMEOUT_TARGETS * options.batch_target_ms
        )
        timeout_ms = base_timeout_ms
        size = walk.initial_size
        span: BatchSpan | None = None
        redos = 0
        while True:
            if self.context.should_stop():
                raise JobInterrupted(f"{self.context.job_name} stopped: shutdown requested")
            if span is None:  # else redo the batch that was rolled back
                if not self._may_continue():
                    return
                span = walk.claim(size, self._rows_left())
                if span is None:
                    return
            batch_started = time.perf_counter()
            try:
                result = self._run_batch(conn, span, timeout_ms)
            except LockWaitTimedOut as exc:
                redos += 1
                with self._lock:
                    self.progress.lock_timeouts += 1
                self.observer.lock_timed_out()
                if redos <= LOCK_TIMEOUT_REDOS:
                    logger.debug("a batch waited lock_timeout_ms for a %s; redoing it", exc)
                    continue
                if exc.on_table:
                    raise table_locked(
                        conn, walk.table.table, options.lock_timeout_ms, BLOCKS_DELETES
                    ) from None
                raise JobError(
                    f"pg-ttl-purge: batches of {walk.table.qualified} waited beyond "
                    f"lock_timeout_ms {options.lock_timeout_ms} for row locks other sessions "
                    f"hold, {redos} times in a row (rows locked as the batch deleted them, or "
                    "rows a foreign key or trigger of the table changes); the table itself is "
                    "not locked. The next run carries on"
                ) from None
            except psycopg.errors.QueryCanceled:
                if self.context.should_stop():
                    raise JobInterrupted(
                        f"{self.context.job_name} stopped: shutdown requested"
                    ) from None
                with self._lock:
                    self.progress.statement_timeouts += 1
                smaller = walk.split(span)
                if smaller is not None:
                    span, size = smaller, smaller.size
                    logger.warning("a batch hit statement_timeout; retrying with %d", size)
                    continue
                # Already the smallest batch (an index crowded with dead entries, a server
                # under load): give it more time rather than give up on the run.
                timeout_ms *= 2
                if timeout_ms > MAX_STATEMENT_TIMEOUT_TARGETS * base_timeout_ms:
                    raise JobError(
                        f"pg-ttl-purge: a batch of {span.size} {walk.unit} of "
                        f"{walk.table.qualified} ran past statement_timeout even at "
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
                span.size,
                walk.unit,
                span.start,
                result.deleted,
                elapsed * 1000,
            )
            redos, timeout_ms = 0, base_timeout_ms
            walk.advance(span, result)
            span = None
            self.observer.batch_done(result, elapsed)
            reached = walk.reached_ttl()
            if reached is not None:
                self.observer.walk_reached(max(self.expiry.now - reached, 0))
            size = next_batch_size(size, elapsed, target_seconds, walk.low, walk.high)
            self._record(result, elapsed, size)

    def _run_batch(self, conn: Connection, span: BatchSpan, timeout_ms: int) -> BatchResult:
        """One batch, one transaction: the rows nobody holds deleted directly, then, if the
        delete passed over rows with an xmax, those of them not locked now via SKIP LOCKED.
        The table's lock is taken first, so a lock_timeout tells a table lock from a row's."""
        xid: str | None = None
        try:
            with conn.transaction():
                row = conn.execute(batch_settings(self.options.lock_timeout_ms, timeout_ms))
                settings = row.fetchone()
                xid = settings[0] if settings else None
                try:
                    conn.execute(self._lock_table)
                except psycopg.errors.LockNotAvailable:
                    raise LockWaitTimedOut(on_table=True) from None
                try:
                    return self.walk.delete_batch(conn, self._params(span))
                except psycopg.errors.LockNotAvailable:
                    raise LockWaitTimedOut(on_table=False) from None
        except Exception:
            # The rows this batch deleted carry its xid in xmax now; they are free again.
            if xid is not None:
                with self._lock:
                    self._rolled_back_xids.append(xid)
                    del self._rolled_back_xids[:-ROLLED_BACK_XIDS_KEPT]
            raise

    def _params(self, span: BatchSpan) -> dict[str, Any]:
        with self._lock:
            ours = list(self._rolled_back_xids)
        return self.expiry.params(ours=ours, **self.walk.span_params(span))

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None or isinstance(self._failure, JobInterrupted):
                self._failure = exc

    def _rows_left(self) -> int:
        """Rows max_rows_per_run still allows; 0 = no limit."""
        limit = self.options.max_rows_per_run
        if not limit:
            return 0
        with self._lock:
            return limit - self.progress.deleted

    def _may_continue(self) -> bool:
        limit = self.options.max_rows_per_run
        with self._lock:
            progress = self.progress
            if self._failure is not None or progress.problem:
                return False
            if limit and progress.deleted >= limit:
                progress.stop_reason = f"max_rows_per_run {limit}"
                return False
            if time.monotonic() >= self.deadline:
                progress.stop_reason = "max_seconds_per_run or the run's timeout"
                return False
            return True

    def _record(self, result: BatchResult, elapsed: float, size: int) -> None:
        with self._lock:
            progress = self.progress
            progress.batches += 1
            progress.deleted += result.deleted
            progress.held_checked += result.held_checked
            progress.held_skipped += result.held_skipped
            progress.longest_batch_seconds = max(progress.longest_batch_seconds, elapsed)
            if result.deleted:
                progress.batches_deleting_nothing = progress.held_while_deleting_nothing = 0
            elif result.held_skipped:
                progress.batches_deleting_nothing += 1
                progress.held_while_deleting_nothing += result.held_skipped
                if progress.batches_deleting_nothing >= STALLED_BATCHES:
                    progress.problem = (
                        f"{progress.batches_deleting_nothing} batches in a row deleted "
                        f"nothing: other sessions hold the "
                        f"{progress.held_while_deleting_nothing} expired rows they reached"
                    )
                    logger.warning("stopping: %s", progress.problem)
            now = time.monotonic()
            if now < self._next_progress_log:
                return
            self._next_progress_log = now + self.options.progress_interval_seconds
            rate = progress.deleted / max(now - self.started, 1e-6)
            left = max(self.backlog - progress.deleted, 0)
            deleted, batches = progress.deleted, progress.batches
        logger.info(
            "purged %d rows of %s in %d batches (%.0f rows/s, batch %d %s), about %d left "
            "(~%.0f s)",
            deleted,
            self.walk.table.qualified,
            batches,
            rate,
            size,
            self.walk.unit,
            left,
            left / rate if rate else 0,
        )

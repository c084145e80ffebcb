"""After a purge: ``VACUUM (ANALYZE)`` of the table when the purge deleted a large share of it.

A purge leaves its rows dead until a vacuum makes their space reusable, and leaves the
planner's row estimate (``pg_class.reltuples``) at what the table held before. Autovacuum gets
there by itself, but on its own schedule: with default settings only once the dead rows pass
20 % of the table plus 50, and only at its next visit (``autovacuum_naptime``). With
``vacuum_after = "auto"`` the job vacuums at once when it deleted at least
``vacuum_min_deleted_ratio`` of the table's rows.

* plain ``VACUUM (ANALYZE)``, never ``VACUUM FULL``: it takes a SHARE UPDATE EXCLUSIVE lock,
  which the application's reads and writes do not conflict with;
* in a session of its own, in autocommit (VACUUM cannot run in a transaction block), with
  ``lock_timeout`` (another VACUUM, ANALYZE or DDL holding the table makes it a skip, not a
  wait) and a ``statement_timeout`` inside the run's ``timeout_seconds``;
* a stop request cancels it (it loses only its own work; the purge is done);
* a role that may not vacuum the table (neither its owner, nor superuser, nor holding MAINTAIN
  on PostgreSQL 17+) gets a WARNING from the server, not an error: that warning is the reason
  it was skipped.

None of these skips makes the run fail: the purge itself succeeded.

Dead-row shares come from ``pg_stat_user_tables`` (``n_dead_tup / (n_live_tup +
n_dead_tup)``): before the purge, as the run starts; after, as VACUUM itself sets them, once
each purge session has put its own counts in first (:func:`flush_statistics`), so they do not
land on top of the VACUUM's later. Without a VACUUM the figure after is the share before plus
the rows deleted: what the statistics show once every session has reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from awops.errors import BackendUnavailable, first_line
from awops.metrics import catalogue
from awops.stop_watch import StopWatcher

if TYPE_CHECKING:
    from awops.context import JobContext
    from awops.jobs.pg_ttl_purge import PgTtlPurgeOptions
    from awops.metrics import MetricsBase
    from awops.pg import Connection
    from awops.purge.target import PurgeTable

logger = logging.getLogger(__name__)

# VACUUM sets the table's statistics itself; a server before 15 passes them through the
# statistics collector, so they are read again for up to this long until they show it.
STATS_AFTER_VACUUM_WAIT_SECONDS = 2.0
# Leave the runner this long between the VACUUM's statement_timeout and the run's timeout.
DEADLINE_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class RowStats:
    """The table's live and dead rows by the statistics, and how many VACUUMs it has had."""

    live: int
    dead: int
    vacuums: int = 0

    @property
    def dead_ratio(self) -> float:
        total = self.live + self.dead
        return round(self.dead / total, 4) if total else 0.0

    def after_deleting(self, deleted: int) -> RowStats:
        """The figures once ``deleted`` live rows are dead, before any vacuum."""
        return RowStats(max(self.live - deleted, 0), self.dead + deleted, self.vacuums)


def flush_statistics(conn: Connection) -> None:
    """Put this session's counts of the rows it deleted into ``pg_stat_user_tables`` now, not
    once it has idled a while: before a VACUUM, whose figures they would otherwise land on top
    of. PostgreSQL 15+ flushes before it answers; before 15 the statistics collector gets them
    within about half a second."""
    if conn.info.server_version >= 150000:
        conn.execute("SELECT pg_stat_force_next_flush()")


def read_row_stats(conn: Connection, table: PurgeTable) -> RowStats | None:
    """``pg_stat_user_tables``' figures for ``table``; None when it has none (stats reset)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")  # the figures now, not cached ones
    row = conn.execute(
        """SELECT n_live_tup, n_dead_tup, vacuum_count FROM pg_stat_user_tables
           WHERE schemaname = %s AND relname = %s""",
        (table.schema, table.table),
    ).fetchone()
    return RowStats(int(row[0]), int(row[1]), int(row[2])) if row else None


def deleted_share(deleted: int, before: RowStats | None, rows_estimate: float) -> float:
    """The share of the table's rows at the start that ``deleted`` is: by the statistics'
    live rows, else the planner's estimate; 1 when neither knows."""
    rows = before.live if before is not None and before.live > 0 else rows_estimate
    return min(deleted / rows, 1.0) if rows > 0 else 1.0


@dataclass
class Reclaim:
    """What the VACUUM after a purge did."""

    vacuumed: bool = False
    vacuum_seconds: float | None = None
    skipped_reason: str = ""
    result: str = ""  # the metric's label
    after: RowStats | None = None


class ReclaimMetrics:
    """``awops_pg_ttl_vacuum_*`` of one table."""

    def __init__(self, metrics: MetricsBase, table: str) -> None:
        self._runs = metrics.series(catalogue.PG_TTL_VACUUM_RUNS)
        self._duration = metrics.series(catalogue.PG_TTL_VACUUM_DURATION).labels(table=table)
        self._table = table

    def record(self, reclaim: Reclaim) -> None:
        self._runs.labels(table=self._table, result=reclaim.result).inc()
        if reclaim.vacuum_seconds is not None:
            self._duration.set(reclaim.vacuum_seconds)


def vacuum_table(
    context: JobContext, table: PurgeTable, lock_timeout_ms: int, timeout_seconds: float
) -> Reclaim:
    """``VACUUM (ANALYZE)`` of ``table`` in a session of its own, cancelled on the run's stop
    request; a skip says why."""
    if timeout_seconds < 1:
        return Reclaim(skipped_reason="no time left within timeout_seconds", result="timed_out")
    if context.should_stop():
        return Reclaim(skipped_reason="stopped on request", result="stopped")
    try:
        with context.pg.dedicated_connection(autocommit=True) as conn:
            context.on_cancel(lambda: None if conn.closed else conn.cancel_safe(timeout=2.0))
            with StopWatcher(context.should_stop, lambda: conn.cancel_safe(timeout=2.0)) as watch:
                reclaim = _vacuum(conn, table, lock_timeout_ms, timeout_seconds)
            if reclaim.result == "timed_out" and watch.fired:
                return Reclaim(skipped_reason="stopped on request", result="stopped")
            return reclaim
    except BackendUnavailable as exc:
        return Reclaim(skipped_reason=str(exc), result="failed")


def _vacuum(
    conn: Connection, table: PurgeTable, lock_timeout_ms: int, timeout_seconds: float
) -> Reclaim:
    warnings: list[str] = []

    def collect(notice: psycopg.errors.Diagnostic) -> None:
        if notice.severity_nonlocalized == "WARNING" and notice.message_primary:
            warnings.append(notice.message_primary)

    conn.add_notice_handler(collect)
    conn.execute(
        "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
        (f"{lock_timeout_ms}ms", f"{int(timeout_seconds * 1000)}ms"),
    )
    before = read_row_stats(conn, table)
    logger.info("vacuuming %s (VACUUM (ANALYZE)) after the purge", table.qualified)
    started = time.monotonic()
    try:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table.table_sql))
    except psycopg.errors.LockNotAvailable:
        return Reclaim(
            skipped_reason=f"the table's lock was not free within vacuum_lock_timeout_ms "
            f"{lock_timeout_ms} (another VACUUM, ANALYZE or DDL holds it)",
            result="lock_timeout",
        )
    except psycopg.errors.QueryCanceled:
        return Reclaim(
            skipped_reason=f"cancelled after {timeout_seconds:g} s (vacuum_timeout_seconds, "
            "or the run's timeout_seconds)",
            result="timed_out",
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        return Reclaim(skipped_reason=_message(exc), result="not_permitted")
    except psycopg.Error as exc:
        return Reclaim(skipped_reason=_message(exc), result="failed")
    seconds = round(time.monotonic() - started, 3)
    if warnings:
        # "permission denied to vacuum ..., skipping it" (17+) or "skipping ... --- only table
        # or database owner can vacuum it": VACUUM did nothing.
        return Reclaim(skipped_reason=warnings[0], result="not_permitted")
    after = _stats_after_vacuum(conn, table, before)
    logger.info("vacuumed %s in %.2f s", table.qualified, seconds)
    return Reclaim(vacuumed=True, vacuum_seconds=seconds, result="vacuumed", after=after)


def _stats_after_vacuum(
    conn: Connection, table: PurgeTable, before: RowStats | None
) -> RowStats | None:
    deadline = time.monotonic() + STATS_AFTER_VACUUM_WAIT_SECONDS
    while True:
        after = read_row_stats(conn, table)
        fresh = after is not None and (before is None or after.vacuums > before.vacuums)
        if fresh or time.monotonic() > deadline:
            return after if fresh else None
        time.sleep(0.1)


def _message(exc: BaseException) -> str:
    diag: Any = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return first_line(primary or exc)


def after_purge(
    context: JobContext,
    options: PgTtlPurgeOptions,
    table: PurgeTable,
    before: RowStats | None,
    deleted: int,
) -> tuple[dict[str, Any], str]:
    """Vacuum when ``vacuum_after`` and the share deleted call for it: the run's details and a
    note for its summary (empty when there is nothing to say)."""
    if before is not None and before.live == 0 and table.rows_estimate > 0:
        # No statistics yet (a new database, or reset by a crash): the planner's estimate.
        before = RowStats(int(table.rows_estimate), before.dead, before.vacuums)
    details: dict[str, Any] = {
        "dead_rows_ratio_before": before.dead_ratio if before is not None else None,
        "vacuumed": False,
    }
    estimate = before.after_deleting(deleted).dead_ratio if before is not None else None
    share = deleted_share(deleted, before, table.rows_estimate)
    wanted = options.vacuum_after == "auto" and deleted > 0
    if wanted and share < options.vacuum_min_deleted_ratio:
        wanted = False
        details["vacuum_skipped_reason"] = (
            f"deleted {share:.1%} of the table, under vacuum_min_deleted_ratio "
            f"{options.vacuum_min_deleted_ratio:g}"
        )
    elif not wanted:
        details["vacuum_skipped_reason"] = (
            "nothing deleted" if options.vacuum_after == "auto" else "vacuum_after is off"
        )
    if context.dry_run:
        details.update(would_vacuum=wanted, dead_rows_ratio_after=estimate)
        return details, f"; would VACUUM (ANALYZE) {table.qualified}" if wanted else ""
    if not wanted:
        details["dead_rows_ratio_after"] = estimate
        return details, ""
    limit = context.seconds_left() - DEADLINE_MARGIN_SECONDS
    if options.vacuum_timeout_seconds:
        limit = min(limit, options.vacuum_timeout_seconds)
    reclaim = vacuum_table(context, table, options.vacuum_lock_timeout_ms, limit)
    ReclaimMetrics(context.metrics, options.table).record(reclaim)
    after = reclaim.after.dead_ratio if reclaim.after is not None else estimate
    details.update(
        vacuumed=reclaim.vacuumed,
        vacuum_seconds=reclaim.vacuum_seconds,
        dead_rows_ratio_after=after,
    )
    if not reclaim.vacuumed:
        details["vacuum_skipped_reason"] = reclaim.skipped_reason
        logger.warning("VACUUM of %s skipped: %s", table.qualified, reclaim.skipped_reason)
        return details, f"; VACUUM skipped: {reclaim.skipped_reason}"
    return details, f"; vacuumed in {reclaim.vacuum_seconds:.1f} s"

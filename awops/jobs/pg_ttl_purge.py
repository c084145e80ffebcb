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
* a normal backlog is walked along ``idx_attributes_ttl`` with a keyset (the (ttl, ctid) of the
  last row the previous batch took in), so a batch never rescans the dead index entries
  earlier batches left, nor the rows other sessions hold; a large one in block ranges, by
  several sessions at once;
* the batch size follows ``batch_target_ms`` (aiming a little under it), and
  ``statement_timeout`` cuts off a batch that runs long anyway, so the time any lock is held
  stays bounded.

This module holds the job's options, metrics and outcome; the work is in :mod:`awops.purge`,
imported when a run starts (it imports psycopg, which commands that only load the job's
options need not pay for).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from awops.abc import Job
from awops.errors import BackendUnavailable, JobError, JobInterrupted
from awops.metrics import catalogue
from awops.purge.tuning import (
    BATCH_AIM_FRACTION,
    HEAP_WALK_MIN_FRACTION,
    LOCK_TIMEOUT_REDOS,
    STATEMENT_TIMEOUT_TARGETS,
)
from awops.registry import register
from awops.result import Outcome
from awops.settings import pg_identifier, setting

if TYPE_CHECKING:
    from awops.metrics import MetricsBase
    from awops.purge.run import Progress
    from awops.purge.walks import BatchResult

logger = logging.getLogger(__name__)


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
        doc="SET LOCAL lock_timeout of each batch (and of the run's first reads): the longest it "
        "waits for the table lock, or for a row locked in the instant between its check and its "
        f"delete; the batch is then redone (at most {LOCK_TIMEOUT_REDOS} times, then the run "
        "stops with an error that tells a table lock from row locks)",
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
    vacuum_after: str = setting(
        "off",
        choices=("off", "auto"),
        doc="auto: VACUUM (ANALYZE) the table after a run that deleted at least "
        "vacuum_min_deleted_ratio of its rows (never VACUUM FULL); off: leave it to autovacuum",
    )
    vacuum_min_deleted_ratio: float = setting(
        0.1, minimum=0.0, maximum=1.0, doc="share of the table's rows a run must delete to vacuum"
    )
    vacuum_lock_timeout_ms: int = setting(
        2000,
        minimum=1,
        doc="the VACUUM's lock_timeout: it is skipped (with a note) when another VACUUM, "
        "ANALYZE or DDL holds the table longer",
    )
    vacuum_timeout_seconds: float = setting(
        0.0,
        minimum=0.0,
        doc="the VACUUM's statement_timeout; 0 = what is left of the run's timeout_seconds",
    )


class PurgeMetrics:
    """The job's series for one table; the run tells it of each batch."""

    def __init__(self, metrics: MetricsBase, table: str) -> None:
        self.purged = metrics.series(catalogue.PG_TTL_PURGED_ROWS).labels(table=table)
        # After a run the backlog is what it was less the rows deleted, and the oldest age
        # that of the first row the walk has not reached.
        self.backlog = metrics.series(catalogue.PG_TTL_EXPIRED_ROWS).labels(table=table)
        self.oldest_age = metrics.series(catalogue.PG_TTL_OLDEST_EXPIRED_AGE).labels(table=table)
        self.held_skipped = metrics.series(catalogue.PG_TTL_HELD_ROWS_SKIPPED).labels(table=table)
        self.lock_timeouts = metrics.series(catalogue.PG_TTL_LOCK_TIMEOUTS).labels(table=table)
        self.batch_duration = metrics.series(catalogue.PG_TTL_BATCH_DURATION).labels(table=table)

    def batch_done(self, result: BatchResult, elapsed_seconds: float) -> None:
        self.purged.inc(result.deleted)
        self.held_skipped.inc(result.held_skipped)
        self.batch_duration.observe(elapsed_seconds)

    def lock_timed_out(self) -> None:
        self.lock_timeouts.inc()

    def walk_reached(self, oldest_age_seconds: int) -> None:
        self.oldest_age.set(oldest_age_seconds)


@register
class PgTtlPurge(Job[PgTtlPurgeOptions]):
    name = "pg-ttl-purge"
    backend = "postgresql"
    description = "deletes expired attributes rows in short, lock-skipping batches"
    default_schedule = "every 10m"
    default_timeout_seconds = 900.0
    changes_data = True
    Options = PgTtlPurgeOptions

    def _run(self) -> Outcome:
        # The purge's machinery, and with it psycopg, is imported here only: when a run starts.
        from awops.purge.reclaim import after_purge, read_row_stats
        from awops.purge.run import Progress, PurgeRun
        from awops.purge.target import count_expired, survey
        from awops.purge.walks import choose_walk

        options = self.options
        metrics = PurgeMetrics(self.context.metrics, options.table)
        progress = Progress()
        dry_run = self.context.dry_run
        details: dict[str, Any] = {"dry_run": dry_run}
        backlog = 0
        try:
            with self.context.pg.connection() as conn:
                self.context.on_cancel(lambda: conn.cancel_safe(timeout=2.0))
                start = survey(conn, options, self.context.pg.settings.search_schema)
                table, expiry = start.table, start.expiry
                backlog, oldest = start.backlog.rows, start.backlog.oldest
                metrics.backlog.set(backlog)
                metrics.oldest_age.set(start.oldest_age_seconds)
                details.update(table=table.qualified, cutoff=expiry.cutoff, index=table.index)
                before = read_row_stats(conn, table)
                if dry_run:
                    would = count_expired(
                        conn, table, expiry, options.max_rows_per_run, options.lock_timeout_ms
                    )
                    reclaim, note = after_purge(self.context, options, table, before, would)
                    summary = (
                        f"dry run: would delete {would} expired rows of {table.qualified} "
                        f"(ttl before {expiry.cutoff}){note}"
                    )
                    return Outcome.ok(summary, deleted=0, would_delete=would, **details, **reclaim)
                if oldest is not None:
                    walk = choose_walk(table, expiry, options, backlog, oldest)
                    purge = PurgeRun(
                        self.context, options, walk, expiry, backlog, progress, metrics
                    )
                    purge.run(conn)
                else:
                    progress.walk_finished = True
        except JobInterrupted:
            metrics.backlog.set(max(backlog - progress.deleted, 0))
            return Outcome.error(
                f"stopped on request after deleting {progress.deleted} rows in "
                f"{progress.batches} batches of {details.get('table', options.table)}; "
                "the next run carries on",
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
        reclaim, note = after_purge(self.context, options, table, before, progress.deleted)
        return self._outcome(progress, backlog, metrics, {**details, **reclaim}, note)

    def _outcome(
        self,
        progress: Progress,
        backlog: int,
        metrics: PurgeMetrics,
        details: dict[str, Any],
        note: str = "",
    ) -> Outcome:
        remaining = 0 if progress.walk_finished else max(backlog - progress.deleted, 0)
        metrics.backlog.set(remaining)
        if progress.walk_finished:
            metrics.oldest_age.set(0)
        summary = (
            f"deleted {progress.deleted} expired rows of {details['table']} in "
            f"{progress.batches} batch{'es' if progress.batches != 1 else ''}"
        )
        if progress.problem:
            summary += f"; stopped: {progress.problem}; the next run carries on"
        elif not progress.walk_finished:
            summary += f"; stopped at {progress.stop_reason}, the next run carries on"
        summary += note
        figures = {
            "deleted": progress.deleted,
            "batches": progress.batches,
            "longest_batch_seconds": round(progress.longest_batch_seconds, 4),
            "held_checked": progress.held_checked,
            "held_skipped": progress.held_skipped,
            "lock_timeouts": progress.lock_timeouts,
            "statement_timeouts": progress.statement_timeouts,
            "complete": progress.walk_finished,
            "walk": progress.walk,
            **details,
        }
        if progress.problem:
            return Outcome.problem(summary, **figures)
        return Outcome.ok(summary, **figures)

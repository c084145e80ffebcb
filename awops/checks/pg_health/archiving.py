"""WAL archiving: ``pg_stat_archiver`` and the segments waiting to be archived.

The archiver is *failing* when its latest attempt failed (``last_failed_time`` after
``last_archived_time``, or a failure and no success since the statistics were reset). The
segments waiting are the ``.ready`` files of ``pg_wal/archive_status``
(``pg_ls_archive_statusdir()``, granted to ``pg_monitor``); the oldest one's age is how long
archiving has left WAL behind, which tells a stuck or failing archiver from an idle server that
simply has not filled a segment.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from awops.checks.pg_health.queries import one_row
from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.checks.pg_health.queries import Connection
    from awops.metrics import MetricsBase


class Archiver(NamedTuple):
    archive_mode: str  # off, on or always
    archiving: bool  # this server archives: 'on' on a primary, 'always' on any server
    archived_count: int  # since the statistics were reset
    failed_count: int
    last_archived_wal: str | None
    last_archived_age_seconds: float | None  # None: nothing archived since the reset
    last_failed_wal: str | None
    last_failed_age_seconds: float | None
    failing: bool
    pending_segments: int  # .ready files: WAL waiting to be archived
    oldest_pending_age_seconds: float  # 0 when nothing waits

    @property
    def stalled_seconds(self) -> float:
        """How long WAL has waited with no success: the lesser of the last success's age and
        the oldest waiting segment's (so a segment finished a moment ago on a quiet server is
        not mistaken for a stall); 0 when nothing waits."""
        if not self.pending_segments:
            return 0.0
        since_success = self.last_archived_age_seconds
        if since_success is None:
            return self.oldest_pending_age_seconds
        return min(since_success, self.oldest_pending_age_seconds)


_ARCHIVER = """
SELECT current_setting('archive_mode'), pg_is_in_recovery(), archived_count, failed_count,
       last_archived_wal, extract(epoch FROM clock_timestamp() - last_archived_time)::float8,
       last_failed_wal, extract(epoch FROM clock_timestamp() - last_failed_time)::float8,
       coalesce(last_failed_time > last_archived_time, last_failed_time IS NOT NULL)
FROM pg_stat_archiver
"""
_PENDING = """
SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(modification)), 0)::float8
FROM pg_ls_archive_statusdir()
WHERE right(name, 6) = '.ready'
"""


def read_archiver(conn: Connection) -> Archiver:
    (
        mode,
        in_recovery,
        archived,
        failed,
        archived_wal,
        archived_age,
        failed_wal,
        failed_age,
        failing,
    ) = one_row(conn, _ARCHIVER)
    archiving = mode == "always" or (mode == "on" and not in_recovery)
    pending, oldest_pending = one_row(conn, _PENDING) if archiving else (0, 0.0)
    return Archiver(
        archive_mode=mode,
        archiving=archiving,
        archived_count=int(archived),
        failed_count=int(failed),
        last_archived_wal=archived_wal,
        last_archived_age_seconds=_non_negative(archived_age),
        last_failed_wal=failed_wal,
        last_failed_age_seconds=_non_negative(failed_age),
        failing=bool(failing),
        pending_segments=int(pending),
        oldest_pending_age_seconds=max(float(oldest_pending), 0.0),
    )


def _non_negative(seconds: float | None) -> float | None:
    return None if seconds is None else max(float(seconds), 0.0)


class ArchivingFigures:
    """Records WAL archiving against its thresholds; one per run."""

    def __init__(self, metrics: MetricsBase, options: PgHealthOptions, findings: Findings) -> None:
        self.options, self.findings = options, findings
        g = metrics.series
        self.enabled = g(catalogue.PG_ARCHIVER_ENABLED)
        self.failing = g(catalogue.PG_ARCHIVER_FAILING)
        self.failures = g(catalogue.PG_ARCHIVER_FAILURES)
        self.archived = g(catalogue.PG_ARCHIVER_ARCHIVED_FILES)
        self.last_archived_age = g(catalogue.PG_ARCHIVER_LAST_ARCHIVED_AGE)
        self.pending = g(catalogue.PG_ARCHIVER_PENDING_SEGMENTS)
        self.oldest_pending_age = g(catalogue.PG_ARCHIVER_OLDEST_PENDING_AGE)

    def record(self, archiver: Archiver | None) -> None:
        if archiver is None:
            for gauge in (
                self.failing,
                self.last_archived_age,
                self.pending,
                self.oldest_pending_age,
            ):
                gauge.set(math.nan)
            return
        a, opts = archiver, self.options
        self.enabled.set(1 if a.archiving else 0)
        self.failing.set(1 if a.archiving and a.failing else 0)
        self.failures.set(a.failed_count)
        self.archived.set(a.archived_count)
        last_age = a.last_archived_age_seconds
        self.last_archived_age.set(math.inf if last_age is None else last_age)
        self.pending.set(a.pending_segments)
        self.oldest_pending_age.set(a.oldest_pending_age_seconds)
        report: dict[str, Any] = {"archive_mode": a.archive_mode, "archiving": a.archiving}
        self.findings.details["wal_archiving"] = report
        if not a.archiving:
            return
        report.update(
            failing=a.failing,
            failed_count=a.failed_count,
            archived_count=a.archived_count,
            last_archived_wal=a.last_archived_wal,
            last_archived_age_seconds=_rounded(last_age),
            last_failed_wal=a.last_failed_wal,
            last_failed_age_seconds=_rounded(a.last_failed_age_seconds),
            pending_segments=a.pending_segments,
            oldest_pending_age_seconds=round(a.oldest_pending_age_seconds, 3),
            max_archive_failing_seconds=opts.max_archive_failing_seconds,
            max_archive_age_seconds=opts.max_archive_age_seconds,
        )
        last_success = "never" if last_age is None else f"{last_age:.0f} s ago"
        waiting = (
            f"{a.pending_segments} WAL files waiting, the oldest "
            f"{a.oldest_pending_age_seconds:.0f} s"
        )
        if (
            a.failing
            and a.pending_segments
            and a.oldest_pending_age_seconds > opts.max_archive_failing_seconds
        ):
            failed_ago = a.last_failed_age_seconds or 0.0  # set whenever failing
            self.findings.problems.append(
                f"WAL archiving failing: latest attempt on {a.last_failed_wal} failed "
                f"{failed_ago:.0f} s ago ({a.failed_count} failed attempts since the "
                f"statistics reset), last success {last_success}, {waiting}, above "
                f"max_archive_failing_seconds {opts.max_archive_failing_seconds:g}"
            )
        if a.stalled_seconds > opts.max_archive_age_seconds:
            self.findings.problems.append(
                f"WAL archiving stale: last WAL archived {last_success}, {waiting}, above "
                f"max_archive_age_seconds {opts.max_archive_age_seconds:g}"
            )


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)

"""One run of the ``pgbackrest`` job: ``info`` read and judged, the archive walked, and, when
``check_schedule`` says so, ``pgbackrest check``.

The time of the last passing ``check`` is kept with the metrics object the run reports
through: for the daemon's lifetime (a restart checks at its first run), and for one process
under ``run-once`` (each invocation checks).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from awops.metrics import catalogue
from awops.pgbackrest import BACKEND_LABEL
from awops.pgbackrest.archive import Segment, segment_bytes, walk_archive
from awops.pgbackrest.cli import CheckFailed, PgBackRest, Settings
from awops.pgbackrest.errors import PgBackRestError
from awops.pgbackrest.info import BACKUP_TYPES, Backup, StanzaInfo
from awops.result import Outcome
from awops.schedule import Schedule, parse_schedule

if TYPE_CHECKING:
    from awops.checks.pgbackrest import PgBackRestOptions
    from awops.context import JobContext

logger = logging.getLogger(__name__)

_ledger_lock = threading.Lock()
_check_passed: weakref.WeakKeyDictionary[object, dict[tuple[str, str, str], float]] = (
    weakref.WeakKeyDictionary()
)


def last_check_passed(owner: object, key: tuple[str, str, str]) -> float | None:
    with _ledger_lock:
        return _check_passed.get(owner, {}).get(key)


def record_check_passed(owner: object, key: tuple[str, str, str], when: float) -> None:
    with _ledger_lock:
        _check_passed.setdefault(owner, {})[key] = when


def next_check_time(schedule: Schedule, last_passed: float) -> float | None:
    """The first time ``schedule`` fires after ``last_passed``."""
    if schedule.interval_seconds is not None:
        return last_passed + schedule.interval_seconds
    # APScheduler only for a cron schedule.
    from awops.triggers import next_run

    upcoming = next_run(schedule, dt.datetime.fromtimestamp(last_passed, dt.UTC))
    return upcoming.timestamp() if upcoming is not None else None


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


class CheckRun:
    """One run of the ``pgbackrest`` job for one stanza."""

    def __init__(self, context: JobContext, options: PgBackRestOptions) -> None:
        self.context = context
        self.options = options
        self.stanza = options.stanza
        self.problems: list[str] = []
        self.metrics = context.metrics

    def run(self) -> Outcome:
        options = self.options
        client = PgBackRest(
            Settings(options.pgbackrest, options.config, self.stanza, "jobs.pgbackrest"),
            stop_requested=self.context.should_stop,
            command_timeout_seconds=options.command_timeout_seconds,
        )
        try:
            info = client.info(options.repo)
        except PgBackRestError:
            # Unreadable is not ok: the last good answer must not keep showing.
            self.metrics.series(catalogue.PGBACKREST_STANZA_OK).labels(stanza=self.stanza).set(0)
            raise
        now = self.context.clock()
        details: dict[str, Any] = {
            "stanza": self.stanza,
            "status": {"code": info.status_code, "message": info.status_message},
            "backup_running": info.backup_lock_held,
        }
        self._stanza_status(info)
        details["repos"] = {
            f"repo{repo.key}": self._repo(client, info, repo.key, repo.ok, repo.message, now)
            for repo in info.repos
            if not options.repo or repo.key == options.repo
        }
        details["check"] = self._check(client, now)
        details["problems"] = self.problems
        if self.problems:
            return Outcome.problem(f"stanza {self.stanza}: " + "; ".join(self.problems), **details)
        return Outcome.ok(self._healthy_summary(details), **details)

    def _stanza_status(self, info: StanzaInfo) -> None:
        gauge = self.metrics.series(catalogue.PGBACKREST_STANZA_OK)
        gauge.labels(stanza=self.stanza).set(1 if info.ok else 0)
        self.metrics.series(catalogue.PGBACKREST_STANZA_STATUS_CODE).labels(stanza=self.stanza).set(
            info.status_code
        )
        repo_messages = {repo.message for repo in info.repos if not repo.ok}
        # A repository's own error says more; the stanza's summary of it adds nothing.
        if not info.ok and info.status_message not in repo_messages and info.status_code != 4:
            self.problems.append(f"status {info.status_message!r} (code {info.status_code})")

    def _repo(
        self, client: PgBackRest, info: StanzaInfo, key: int, ok: bool, message: str, now: float
    ) -> dict[str, Any]:
        options = self.options
        name = f"repo{key}"
        labels = {"stanza": self.stanza, "repo": name}
        self.metrics.series(catalogue.PGBACKREST_REPO_OK).labels(**labels).set(1 if ok else 0)
        entry: dict[str, Any] = {"ok": ok, "message": message, "backups": {}}
        if not ok:
            self.problems.append(f"{name}: {message}")
        for backup_type in BACKUP_TYPES:
            self._record_type(info, key, backup_type, entry)
        newest = info.newest(key)
        if newest is None:
            if ok:
                self.problems.append(f"{name} holds no backup")
            return entry
        age = max(0.0, now - newest.stop_timestamp)
        entry["newest"] = {"label": newest.label, "type": newest.type, "age_seconds": round(age)}
        target = {"backend": BACKEND_LABEL, "target": f"{self.stanza}/{name}"}
        self.metrics.series(catalogue.BACKUP_LAST_SUCCESS).labels(**target).set(
            newest.stop_timestamp
        )
        self.metrics.series(catalogue.BACKUP_SIZE).labels(**target).set(
            newest.repository_delta_bytes
        )
        if age > options.max_backup_age_seconds:
            self.problems.append(
                f"{name} newest backup {newest.label} is {_hours(age)} old "
                f"(max_backup_age_seconds {options.max_backup_age_seconds:g})"
            )
        full = info.newest(key, "full")
        if options.max_full_backup_age_seconds and full is not None:
            full_age = now - full.stop_timestamp
            if full_age > options.max_full_backup_age_seconds:
                self.problems.append(
                    f"{name} newest full backup {full.label} is {_hours(full_age)} old "
                    f"(max_full_backup_age_seconds {options.max_full_backup_age_seconds:g})"
                )
        if newest.error:
            self.problems.append(
                f"{name} backup {newest.label} found page checksum errors in the database"
            )
        if options.check_archive:
            entry["archive"] = self._archive(client, info, newest, name, labels)
        return entry

    def _record_type(
        self, info: StanzaInfo, key: int, backup_type: str, entry: dict[str, Any]
    ) -> None:
        labels = {"stanza": self.stanza, "repo": f"repo{key}", "type": backup_type}
        count = sum(1 for b in info.backups if b.repo == key and b.type == backup_type)
        self.metrics.series(catalogue.PGBACKREST_BACKUPS).labels(**labels).set(count)
        newest = info.newest(key, backup_type)
        gauges = [
            self.metrics.series(catalogue.PGBACKREST_LAST_BACKUP_TIMESTAMP),
            self.metrics.series(catalogue.PGBACKREST_BACKUP_SIZE),
            self.metrics.series(catalogue.PGBACKREST_BACKUP_REPOSITORY_SIZE),
        ]
        if newest is None:
            # An expired type must not keep showing its last backup.
            for gauge in gauges:
                with contextlib.suppress(KeyError):
                    gauge.remove(self.stanza, f"repo{key}", backup_type)
            return
        values = [newest.stop_timestamp, newest.size_bytes, newest.repository_delta_bytes]
        for gauge, value in zip(gauges, values, strict=True):
            gauge.labels(**labels).set(value)
        entry["backups"][backup_type] = {
            "label": newest.label,
            "stop": _iso(newest.stop_timestamp),
            "size_bytes": newest.size_bytes,
            "repository_bytes": newest.repository_delta_bytes,
            "count": count,
        }

    def _archive(
        self,
        client: PgBackRest,
        info: StanzaInfo,
        newest: Backup,
        name: str,
        labels: dict[str, str],
    ) -> dict[str, Any]:
        archive = info.archive_for(newest)
        gap_gauge = self.metrics.series(catalogue.PGBACKREST_ARCHIVE_GAP).labels(**labels)
        if newest.archive_start is None or newest.archive_stop is None:
            return {"checked": False, "reason": "the backup names no WAL (an offline backup)"}
        if archive is None or archive.max is None:
            gap_gauge.set(1)
            self.problems.append(f"{name} holds no WAL for backup {newest.label}")
            return {"checked": True, "min": None, "max": None}
        first = Segment.parse(newest.archive_start)
        last = max(Segment.parse(archive.max), Segment.parse(newest.archive_stop))
        size = segment_bytes(info.backups)
        walk = walk_archive(
            lambda path: client.list_archive(newest.repo, path),
            archive.archive_id,
            first,
            last,
            size,
        )
        gap_gauge.set(1 if walk.has_gap else 0)
        self.metrics.series(catalogue.PGBACKREST_ARCHIVE_MISSING_SEGMENTS).labels(**labels).set(
            walk.missing_segments
        )
        self.metrics.series(catalogue.PGBACKREST_ARCHIVE_SEGMENTS_SINCE_BACKUP).labels(
            **labels
        ).set(walk.segments_checked)
        if walk.newest_segment_timestamp is not None:
            self.metrics.series(catalogue.PGBACKREST_ARCHIVE_NEWEST_SEGMENT_TIMESTAMP).labels(
                **labels
            ).set(walk.newest_segment_timestamp)
        if walk.has_gap:
            if Segment.parse(archive.max) < Segment.parse(newest.archive_stop):
                self.problems.append(
                    f"{name} backup {newest.label} needs WAL up to {newest.archive_stop}, "
                    f"the archive ends at {archive.max}: the backup cannot be restored"
                )
            else:
                self.problems.append(
                    f"{name} archive has a gap after backup {newest.label}: "
                    f"{walk.missing_segments} WAL segment(s) missing "
                    f"({', '.join(walk.missing_ranges)})"
                )
        return {
            "checked": True,
            "archive_id": archive.archive_id,
            "min": archive.min,
            "max": archive.max,
            "segment_bytes": size,
            **walk.as_json(),
        }

    def _check(self, client: PgBackRest, now: float) -> dict[str, Any]:
        options = self.options
        if not options.check_schedule:
            return {"ran": False, "reason": "check_schedule is empty"}
        schedule = parse_schedule(options.check_schedule)
        key = (options.pgbackrest, options.config, self.stanza)
        last_passed = last_check_passed(self.metrics, key)
        if last_passed is not None:
            due_at = next_check_time(schedule, last_passed)
            if due_at is None or due_at > now:
                return {
                    "ran": False,
                    "last_passed": _iso(last_passed),
                    "next_due": _iso(due_at) if due_at is not None else None,
                }
        if self.context.dry_run:
            return {"ran": False, "reason": "dry run: pgbackrest check archives a WAL segment"}
        labels = {"stanza": self.stanza}
        logger.info("running pgbackrest check for stanza %s", self.stanza)
        try:
            client.check(options.archive_timeout_seconds, options.check_timeout_seconds)
        except CheckFailed as exc:
            self.metrics.series(catalogue.PGBACKREST_CHECK_OK).labels(**labels).set(0)
            self.problems.append(str(exc))
            return {"ran": True, "ok": False, "message": str(exc)}
        passed = self.context.clock()
        record_check_passed(self.metrics, key, passed)
        self.metrics.series(catalogue.PGBACKREST_CHECK_OK).labels(**labels).set(1)
        self.metrics.series(catalogue.PGBACKREST_CHECK_LAST_SUCCESS).labels(**labels).set(passed)
        return {"ran": True, "ok": True}

    def _healthy_summary(self, details: dict[str, Any]) -> str:
        parts = []
        for name, entry in details["repos"].items():
            newest = entry.get("newest")
            if newest is None:
                continue
            age = _hours(newest["age_seconds"])
            text = f"{name} newest {newest['type']} {newest['label']} {age} old"
            archive = entry.get("archive") or {}
            if archive.get("checked"):
                text += f", WAL continuous to {archive['max']}"
            parts.append(text)
        check = details["check"]
        if check.get("ran"):
            parts.append("pgbackrest check passed")
        return f"stanza {self.stanza} ok: " + "; ".join(parts)

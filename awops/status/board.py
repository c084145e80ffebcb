"""The status board: what the daemon's runs and backup targets last said, kept in memory.

The runner tells the board of every run (it is a :class:`~awops.runner.RunObserver`); the
daemon's start-up scan tells it of the newest backup on each target. The board only records;
:meth:`StatusBoard.document` puts what it holds together with the daemon's schedule into the
``/api/status`` document that the page and ``awops status`` show.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from awops import __version__
from awops.result import JobResult, Status

# Problems first: the order jobs are listed in, on the page, in the document and in the CLI.
_ORDER = {"error": 0, "problem": 1, None: 2, "skipped": 3, "ok": 4}


def iso_z(timestamp: float | None) -> str | None:
    """``2026-12-05T03:00:00.000Z``, as ``backups list`` prints times; None stays None."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time with an offset; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def relative_time(seconds: float) -> str:
    """``5 s ago``, ``in 3 min``: a time as seen from now, for people."""
    span = abs(seconds)
    if span < 1:
        return "now"
    if span < 120:
        amount = f"{span:.0f} s"
    elif span < 7200:
        amount = f"{span / 60:.0f} min"
    elif span < 2 * 86400:
        amount = f"{span / 3600:.0f} h"
    else:
        amount = f"{span / 86400:.0f} days"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def job_order(status: str | None, job: str) -> tuple[int, str]:
    """Sort key: error, problem, not run yet, skipped, ok; then by name."""
    return _ORDER.get(status, 2), job


@dataclass(frozen=True)
class PlannedJob:
    """A job the daemon schedules: its schedule as written and its next fire time."""

    job: str
    schedule: str
    next_run: float | None


@dataclass(frozen=True)
class DaemonView:
    """What the daemon knows when the document is made: its plan, targets and name."""

    jobs: Sequence[PlannedJob]
    backup_targets: Sequence[str]  # display URLs of [backup] targets
    instance: str


@dataclass
class _JobState:
    status: str | None = None
    summary: str = ""
    last_run: float | None = None
    last_success: float | None = None
    duration_seconds: float | None = None
    running_since: float | None = None


@dataclass(frozen=True)
class Verification:
    """What a verify found of one backup, and when."""

    backup: str
    at: float
    ok: bool


@dataclass(frozen=True)
class NewestBackup:
    id: str
    created: float
    size_bytes: int | None


@dataclass
class _TargetState:
    backend: str
    target: str
    database: str = ""
    newest: NewestBackup | None = None
    verifications: dict[str, Verification] = field(default_factory=dict)  # by backup id
    last_verify: Verification | None = None
    error: str = ""


class StatusBoard:
    """Thread-safe record of each job's runs and each backup target's newest backup."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started_at = clock()
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobState] = {}
        self._targets: dict[tuple[str, str], _TargetState] = {}

    # -- RunObserver -------------------------------------------------------------------------

    def run_started(self, job: str, run_id: str, dry_run: bool) -> None:
        if dry_run:
            return
        with self._lock:
            self._jobs.setdefault(job, _JobState()).running_since = self.clock()

    def run_finished(self, result: JobResult, dry_run: bool) -> None:
        if dry_run:  # changed nothing, proved nothing
            return
        now = self.clock()
        with self._lock:
            state = self._jobs.setdefault(result.job, _JobState())
            state.status = str(result.status)
            state.summary = result.summary
            state.last_run = now
            state.duration_seconds = result.duration_seconds
            state.running_since = None
            if result.status is Status.OK:
                state.last_success = now
        if result.job == "pg-backup":
            self._record_backup(result.details)
        elif result.job == "pg-backup-verify" and result.status in (Status.OK, Status.PROBLEM):
            self._record_verify(result.status, result.details, now)

    def _record_backup(self, details: Mapping[str, Any]) -> None:
        backup, created = details.get("backup"), parse_time(details.get("created"))
        targets = details.get("targets")
        if not isinstance(backup, str) or created is None or not isinstance(targets, list):
            return
        size = details.get("size_bytes")
        newest = NewestBackup(backup, created, size if isinstance(size, int) else None)
        for target in targets:
            if isinstance(target, str):
                self.offer_backup("postgresql", target, newest)

    def _record_verify(self, status: Status, details: Mapping[str, Any], now: float) -> None:
        # One target: its details; target = "all": details.targets maps each URL to its own.
        per_target = details.get("targets")
        entries: list[tuple[Any, Mapping[str, Any]]]
        if isinstance(per_target, dict):
            entries = [(url, d) for url, d in per_target.items() if isinstance(d, dict)]
        else:
            entries = [(details.get("target"), details)]
        for url, entry in entries:
            backup = entry.get("backup")
            verdict = entry.get("status", str(status))
            if isinstance(url, str) and isinstance(backup, str) and verdict in ("ok", "problem"):
                self.offer_verification(
                    "postgresql", url, Verification(backup, now, verdict == "ok")
                )

    # -- backups -----------------------------------------------------------------------------

    def offer_backup(
        self, backend: str, target: str, newest: NewestBackup, database: str = ""
    ) -> bool:
        """Record ``newest`` unless a newer backup is known; True when it was recorded.

        Runs and the start-up scan both offer backups, in whatever order they finish.
        """
        with self._lock:
            state = self._target(backend, target)
            if database:
                state.database = database
            if state.newest is not None and state.newest.created > newest.created:
                return False
            state.newest = newest
            state.error = ""
            return True

    def offer_verification(self, backend: str, target: str, verification: Verification) -> bool:
        """Record a verify result; True when it is the newest verify known on the target."""
        with self._lock:
            state = self._target(backend, target)
            known = state.verifications.get(verification.backup)
            if known is None or known.at <= verification.at:
                state.verifications[verification.backup] = verification
            if state.last_verify is None or state.last_verify.at <= verification.at:
                state.last_verify = verification
                return True
            return False

    def target_error(self, backend: str, target: str, message: str) -> None:
        """The target could not be read; shown until a backup on it is recorded."""
        with self._lock:
            self._target(backend, target).error = message

    def _target(self, backend: str, target: str) -> _TargetState:
        return self._targets.setdefault((backend, target), _TargetState(backend, target))

    # -- the document ------------------------------------------------------------------------

    def document(self, view: DaemonView) -> dict[str, Any]:
        """The ``/api/status`` document: every planned job, problems first, and the newest
        backup of each configured target."""
        with self._lock:
            jobs = [self._job_json(planned) for planned in view.jobs]
            backups = [
                self._target_json(self._targets.get(("postgresql", url)), url)
                for url in view.backup_targets
            ]
        jobs.sort(key=lambda job: job_order(job["status"], job["job"]))
        return {
            "ok": not any(job["status"] in ("problem", "error") for job in jobs),
            "generated_at": iso_z(self.clock()),
            "started_at": iso_z(self.started_at),
            "instance": view.instance,
            "version": __version__,
            "jobs": jobs,
            "backups": backups,
        }

    def _job_json(self, planned: PlannedJob) -> dict[str, Any]:
        state = self._jobs.get(planned.job, _JobState())
        duration = state.duration_seconds
        return {
            "job": planned.job,
            "status": state.status,
            "last_run": iso_z(state.last_run),
            "last_success": iso_z(state.last_success),
            "next_run": iso_z(planned.next_run),
            "duration_seconds": None if duration is None else round(duration, 3),
            "summary": state.summary,
            "schedule": planned.schedule,
            "running_since": iso_z(state.running_since),
        }

    @staticmethod
    def _target_json(state: _TargetState | None, url: str) -> dict[str, Any]:
        if state is None:
            state = _TargetState("postgresql", url)
        newest, last = state.newest, state.last_verify
        verified = state.verifications.get(newest.id) if newest is not None else None
        return {
            "backend": state.backend,
            "target": state.target,
            "database": state.database or None,
            "id": newest.id if newest else None,
            "created": iso_z(newest.created) if newest else None,
            "size_bytes": newest.size_bytes if newest else None,
            "verified": _verification_json(verified),
            "last_verify": (
                None
                if last is None
                else {"backup": last.backup, "at": iso_z(last.at), "ok": last.ok}
            ),
            "error": state.error or None,
        }


def _verification_json(verification: Verification | None) -> dict[str, Any] | None:
    if verification is None:
        return None
    return {"at": iso_z(verification.at), "ok": verification.ok}

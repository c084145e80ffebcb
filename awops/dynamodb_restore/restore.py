"""Running a :class:`~awops.dynamodb_restore.plan.RestorePlan`: every restore is started, then
all are awaited together; as each table turns ACTIVE its settings are re-applied from the
source and compared.

A stop request (SIGTERM) or the time budget ends the waiting, never the restores: AWS cannot
cancel a restore, and a table still CREATING cannot be deleted. Tables already created are
left in place and reported as such, so the operator always knows what exists. The source
tables are only ever read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from awops.dynamodb import translated_errors
from awops.dynamodb_restore._aws import (
    Pacing,
    describe_table_or_none,
    failure_text,
    is_active,
    iso,
    with_retries,
)
from awops.dynamodb_restore.apply import OK, SettingsApplier
from awops.dynamodb_restore.compare import Comparison, compare_settings
from awops.dynamodb_restore.plan import RestorePlan, TablePlan
from awops.dynamodb_restore.snapshot import read_settings

logger = logging.getLogger(__name__)

_START_RETRY_CODES = frozenset({"LimitExceededException"})
NOT_STARTED, RESTORING, ACTIVE, FAILED = "NOT_STARTED", "RESTORING", "ACTIVE", "FAILED"
TIMED_OUT, INTERRUPTED = "TIMED_OUT", "INTERRUPTED"


@dataclass
class TableOutcome:
    """What became of one table's restore."""

    plan: TablePlan
    status: str = NOT_STARTED
    reason: str = ""
    exists: bool = False  # the target table exists now: this restore created it
    started: float | None = None  # time.monotonic() at RestoreTable*
    restore_seconds: float | None = None
    settings: dict[str, str] = field(default_factory=dict)
    comparison: list[Comparison] = field(default_factory=list)
    _last_status: str = ""
    _last_log: float = 0.0

    def problems(self) -> list[str]:
        target = self.plan.target
        found = [f"{target}: {self.reason}"] if self.reason else []
        found += [
            f"{target}: {name} {result}" for name, result in self.settings.items() if result != OK
        ]
        found += [
            f"{target}: {row.setting} differs (source {row.source}, restored {row.restored})"
            for row in self.comparison
            if not row.match
        ]
        return found

    @property
    def ok(self) -> bool:
        return self.status == ACTIVE and not self.problems()

    def as_json(self) -> dict[str, Any]:
        return {
            **self.plan.as_json(),
            "status": self.status,
            "exists": self.exists,
            "restore_seconds": self.restore_seconds,
            "settings": dict(self.settings),
            "comparison": [row.as_json() for row in self.comparison],
            "problems": self.problems(),
        }


@dataclass
class RestoreReport:
    plan: RestorePlan
    tables: list[TableOutcome]
    stopped_by: str = ""  # "", "stop requested" or "timeout"

    @property
    def ok(self) -> bool:
        return not self.stopped_by and all(outcome.ok for outcome in self.tables)

    @property
    def existing(self) -> list[str]:
        """The target tables this restore created (finished or still being restored)."""
        return [outcome.plan.target for outcome in self.tables if outcome.exists]

    def problems(self) -> list[str]:
        return [problem for outcome in self.tables for problem in outcome.problems()]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "time": iso(self.plan.instant) if self.plan.instant is not None else None,
            "mode": self.plan.mode,
            "source_prefix": self.plan.source_prefix,
            "to_prefix": self.plan.to_prefix,
            "stopped_by": self.stopped_by or None,
            "tables": [outcome.as_json() for outcome in self.tables],
            "existing_tables": self.existing,
            "problems": self.problems(),
        }


class DynamoDBRestore:
    """Restores the tables of ``plan``: all started, then awaited, then settings and checks.

    ``autoscaling`` returns the Application Auto Scaling client (called only for sources that
    scale). ``stop_event`` ends the waiting early; ``timeout_seconds`` bounds the whole run.
    """

    def __init__(
        self,
        client: Any,
        autoscaling: Callable[[], Any],
        plan: RestorePlan,
        *,
        timeout_seconds: float,
        stop_event: threading.Event,
        poll_seconds: float = 10.0,
        progress_every_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.autoscaling = autoscaling
        self.plan = plan
        self.monotonic = monotonic
        self.pacing = Pacing(monotonic() + timeout_seconds, stop_event, poll_seconds, monotonic)
        self.timeout_seconds = timeout_seconds
        self.progress_every_seconds = progress_every_seconds

    def run(self) -> RestoreReport:
        outcomes = [TableOutcome(table) for table in self.plan.tables]
        report = RestoreReport(self.plan, outcomes)
        when = iso(self.plan.instant) if self.plan.instant is not None else "their backups"
        logger.info(
            "restoring %d table(s) of %s_* into %s_* to %s",
            len(outcomes),
            self.plan.source_prefix,
            self.plan.to_prefix,
            when,
        )
        for outcome in outcomes:
            if self.pacing.stopping():
                report.stopped_by = "stop requested"
                outcome.reason = "not started: stop requested"
                continue
            self._start(outcome)
        pending = [o for o in outcomes if o.status == RESTORING]
        while pending:
            # Look at every restore first, so each one's time to ACTIVE is its own; then
            # re-apply the settings of those that are ready.
            finished = [outcome for outcome in pending if self._poll(outcome)]
            for outcome in finished:
                pending.remove(outcome)
                if outcome.status == ACTIVE:
                    self._finish(outcome)
            if not pending:
                break
            if self.pacing.stopping() or self.pacing.seconds_left() <= 0:
                report.stopped_by = "stop requested" if self.pacing.stopping() else "timeout"
                self._abandon(pending, report.stopped_by)
                break
            self.pacing.sleep(self.pacing.poll_seconds)
        if self.pacing.stopping() and not report.stopped_by:
            report.stopped_by = "stop requested"
        return report

    def _start(self, outcome: TableOutcome) -> None:
        plan = outcome.plan
        source, target = plan.source, plan.target
        if plan.backup_arn:
            logger.info("restoring %s into %s from backup %s", source, target, plan.backup_arn)
            call = partial(
                self.client.restore_table_from_backup,
                TargetTableName=target,
                BackupArn=plan.backup_arn,
            )
        else:
            assert self.plan.instant is not None
            logger.info("restoring %s into %s to %s", source, target, iso(self.plan.instant))
            call = partial(
                self.client.restore_table_to_point_in_time,
                SourceTableName=source,
                TargetTableName=target,
                RestoreDateTime=self.plan.instant,
            )
        operation = "RestoreTableFromBackup" if plan.backup_arn else "RestoreTableToPointInTime"
        try:
            with translated_errors(self.client, f"{operation} {target}"):
                # Too many table operations at once is worth waiting for; nothing else is.
                with_retries(call, f"{operation} {target}", self.pacing, _START_RETRY_CODES)
        except Exception as exc:
            outcome.status = FAILED
            outcome.reason = f"restore not started: {failure_text(exc)}"
            logger.error("restore of %s into %s not started: %s", source, target, outcome.reason)
            return
        outcome.status = RESTORING
        outcome.exists = True
        outcome.started = self.monotonic()

    def _poll(self, outcome: TableOutcome) -> bool:
        """Look at one restore; True once it is over (ACTIVE, or failed)."""
        target = outcome.plan.target
        try:
            table = describe_table_or_none(self.client, target)
        except Exception as exc:
            logger.warning("restore of %s: cannot read its state: %s", target, failure_text(exc))
            return False
        elapsed = self.monotonic() - (outcome.started or self.monotonic())
        if table is None:
            outcome.status = FAILED
            outcome.exists = False
            outcome.reason = "the restore failed in AWS: the target table is gone"
            logger.error("restore of %s failed: the table is gone", target)
            return True
        status = str(table.get("TableStatus", "UNKNOWN"))
        if is_active(table):
            outcome.status = ACTIVE
            outcome.restore_seconds = round(elapsed, 3)
            logger.info("restore of %s is ACTIVE after %.0f s", target, elapsed)
            return True
        now = self.monotonic()
        if status != outcome._last_status or now - outcome._last_log >= self.progress_every_seconds:
            logger.info(
                "restoring %s into %s: %s for %.0f s", outcome.plan.source, target, status, elapsed
            )
            outcome._last_status, outcome._last_log = status, now
        return False

    def _finish(self, outcome: TableOutcome) -> None:
        """Re-apply the source's settings, read them back, compare."""
        target = outcome.plan.target
        applier = SettingsApplier(self.client, self.autoscaling, self.pacing)
        outcome.settings = applier.apply(outcome.plan.settings, target)
        try:
            restored = read_settings(self.client, target, self.autoscaling)
        except Exception as exc:
            outcome.reason = f"cannot read the restored table's settings: {failure_text(exc)}"
            return
        if restored is None:
            outcome.status = FAILED
            outcome.exists = False
            outcome.reason = "the table disappeared after its restore"
            return
        outcome.comparison = compare_settings(outcome.plan.settings, restored)
        differing = [row.setting for row in outcome.comparison if not row.match]
        if differing:
            logger.warning("%s differs from %s in %s", target, outcome.plan.source, differing)
        else:
            logger.info("%s matches %s in every setting", target, outcome.plan.source)

    def _abandon(self, pending: list[TableOutcome], why: str) -> None:
        for outcome in pending:
            if why == "stop requested":
                outcome.status, when = INTERRUPTED, "when the stop was requested"
            else:
                outcome.status = TIMED_OUT
                when = f"after {self.timeout_seconds:g} s (--timeout-seconds)"
            outcome.reason = (
                f"still restoring {when}; the restore goes on in AWS and the table is left in "
                "place without its settings: delete it once ACTIVE, and restore again"
            )
            logger.warning("%s: %s", outcome.plan.target, outcome.reason)

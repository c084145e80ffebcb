"""``dynamodb-pitr``: point-in-time recovery is on for every table, current, with a long window.

AWS Config can say PITR is on; it cannot say that ``LatestRestorableDateTime`` is fresh or that
the window reaches back as far as the operator needs. With ``enable_pitr = true`` the check
turns PITR on where it is off and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from awops import dynamodb
from awops.abc import Job
from awops.aws import epoch
from awops.checks._dynamodb_tables import TableWalk
from awops.metrics import GaugeSeries, catalogue
from awops.registry import register
from awops.result import Outcome
from awops.settings import setting

logger = logging.getLogger(__name__)


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class DynamoDBPitrOptions:
    max_latest_restorable_age_seconds: float = setting(
        900.0, minimum=0, doc="LatestRestorableDateTime may be this old"
    )
    min_restore_window_days: float = setting(
        7.0, minimum=0, doc="the restore window must reach back this far (or to table creation)"
    )
    window_slack_seconds: float = setting(
        3600.0,
        minimum=0,
        doc="PITR enabled within this long of table creation counts as from birth",
    )
    enable_pitr: bool = setting(False, doc="turn PITR on where it is off (UpdateContinuousBackups)")


@register
class DynamoDBPitr(Job[DynamoDBPitrOptions]):
    name = "dynamodb-pitr"
    backend = "dynamodb"
    description = "PITR ENABLED on every expected table, fresh, with the required restore window"
    default_schedule = "every 15m"
    default_timeout_seconds = 120.0
    Options = DynamoDBPitrOptions

    def _run(self) -> Outcome:
        settings = self.context.config.dynamodb
        state = dynamodb.shared_state(self.context.aws)
        metrics = self.context.metrics
        enabled_gauge = metrics.series(catalogue.DYNAMODB_PITR_ENABLED)
        age_gauge = metrics.series(catalogue.DYNAMODB_PITR_LATEST_RESTORABLE_AGE)
        window_gauge = metrics.series(catalogue.DYNAMODB_PITR_RESTORE_WINDOW)
        options = self.options
        now = self.context.clock()
        walk = TableWalk(
            self.context, state, lambda spec: enabled_gauge.labels(table=spec.name).set(0)
        )
        findings, details = walk.findings, walk.details
        enabled_now: list[str] = []
        tables = dynamodb.expected_tables(settings)
        for spec, table in walk.present(tables):
            backups = state.continuous_backups(spec.name)
            if backups is None:  # deleted since it was described
                walk.missing(spec)
                continue
            pitr = backups.get("PointInTimeRecoveryDescription") or {}
            status = pitr.get("PointInTimeRecoveryStatus", "DISABLED")
            entry: dict[str, Any] = {"pitr_status": status}
            details[spec.name] = entry
            if status != "ENABLED":
                if options.enable_pitr and not self.context.dry_run:
                    self._enable(spec.name)
                    state.forget(spec.name)
                    enabled_now.append(spec.name)
                    entry["enabled_now"] = True
                    enabled_gauge.labels(table=spec.name).set(1)
                else:
                    enabled_gauge.labels(table=spec.name).set(0)
                    suffix = " (dry run: would enable it)" if options.enable_pitr else ""
                    findings.append(f"PITR is {status} on {spec.name}{suffix}")
                continue
            enabled_gauge.labels(table=spec.name).set(1)
            findings += self._freshness(spec.name, pitr, table, now, entry, age_gauge, window_gauge)

        details_all = {"tables": details, "problems": findings, "enabled_now": enabled_now}
        enabled_text = (
            f"enabled PITR on {', '.join(enabled_now)} (was off; its restore window starts now)"
            if enabled_now
            else ""
        )
        if findings:
            summary = "; ".join(findings + ([enabled_text] if enabled_text else []))
            return Outcome.problem(summary, **details_all)
        summary = f"PITR ENABLED and current on all {len(tables)} tables"
        if enabled_text:
            summary = f"{enabled_text}; {summary}"
        return Outcome.ok(summary, **details_all)

    def _enable(self, name: str) -> None:
        client = self.context.aws.dynamodb()
        with dynamodb.translated_errors(client, f"UpdateContinuousBackups {name}"):
            client.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        logger.warning("enabled point-in-time recovery on %s (enable_pitr = true)", name)

    def _freshness(
        self,
        name: str,
        pitr: dict[str, Any],
        table: dict[str, Any],
        now: float,
        entry: dict[str, Any],
        age_gauge: GaugeSeries,
        window_gauge: GaugeSeries,
    ) -> list[str]:
        options = self.options
        found: list[str] = []
        latest = epoch(pitr.get("LatestRestorableDateTime"))
        earliest = epoch(pitr.get("EarliestRestorableDateTime"))
        created = epoch(table.get("CreationDateTime"))
        period_days = pitr.get("RecoveryPeriodInDays")
        if latest is None:
            # AWS can omit it for a moment after enabling; nothing to judge yet.
            entry["latest_restorable"] = None
            return found
        age = max(0.0, now - latest)
        age_gauge.labels(table=name).set(age)
        entry["latest_restorable_age_seconds"] = round(age, 1)
        if age > options.max_latest_restorable_age_seconds:
            found.append(
                f"{name} LatestRestorableDateTime is {age:.0f} s old "
                f"(max_latest_restorable_age_seconds {options.max_latest_restorable_age_seconds:g})"
            )
        required_days = options.min_restore_window_days
        if period_days is not None and period_days < required_days:
            found.append(
                f"{name} keeps PITR for {period_days} days, under min_restore_window_days "
                f"{required_days:g}"
            )
        if earliest is not None:
            window = max(0.0, latest - earliest)
            window_gauge.labels(table=name).set(window)
            required = required_days * 86400
            if created is not None:
                required = min(required, max(0.0, now - created - options.window_slack_seconds))
            entry["restore_window_seconds"] = round(window, 1)
            entry["required_window_seconds"] = round(required, 1)
            if window < required:
                found.append(
                    f"{name} restore window is {window / 86400:.1f} days, needs "
                    f"{required / 86400:.1f} (min_restore_window_days {required_days:g})"
                )
        return found

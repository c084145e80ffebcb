"""``dynamodb-ttl``: TTL is on for ``<prefix>_attributes``, and AWS keeps up with deleting.

ActingWeb writes ``ttl_timestamp`` (epoch seconds, with an hour's clock-skew buffer) on OAuth
sessions, tokens and auth codes and leaves the deleting to DynamoDB TTL, which its docs ask
operators to enable by hand. With TTL off, or on another attribute, those items pile up.

The backlog estimate is a bounded parallel scan: ``scan_segments`` segments, at most
``scan_read_units`` read units and ``scan_seconds`` seconds, paced to
``scan_read_units_per_second``. It projects only ``ttl_timestamp`` of the items whose TTL
passed more than ``grace_seconds`` ago, which gives both the count and the oldest one for the
read units a ``Select=COUNT`` scan would cost. AWS deletes expired items within about two days,
so an older one means TTL deletion is not working.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from awops import dynamodb
from awops.abc import Job
from awops.checks._dynamodb_tables import TableWalk
from awops.metrics import catalogue
from awops.registry import register
from awops.result import Outcome
from awops.settings import setting

logger = logging.getLogger(__name__)


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class DynamoDBTtlOptions:
    attribute: str = setting("ttl_timestamp", doc="the TTL attribute ActingWeb writes")
    backlog_scan: bool = setting(True, doc="estimate expired items still present (a bounded scan)")
    grace_seconds: float = setting(
        3600.0, minimum=0, doc="items whose TTL passed longer ago than this count as backlog"
    )
    max_backlog_age_seconds: float = setting(
        172800.0, minimum=0, doc="the oldest expired item may be this old (AWS: about 2 days)"
    )
    scan_segments: int = setting(4, minimum=1, maximum=64, doc="parallel scan segments")
    scan_read_units: float = setting(1000.0, minimum=1, doc="read-unit budget of one backlog scan")
    scan_seconds: float = setting(30.0, minimum=0.1, doc="time budget of one backlog scan")
    scan_read_units_per_second: float = setting(
        100.0, minimum=0, doc="pace of the backlog scan; 0 = as fast as DynamoDB allows"
    )
    scan_page_size: int = setting(500, minimum=1, maximum=10000, doc="items read per Scan call")


@register
class DynamoDBTtl(Job[DynamoDBTtlOptions]):
    name = "dynamodb-ttl"
    backend = "dynamodb"
    description = "TTL ENABLED on <prefix>_attributes (ttl_timestamp); expired-item backlog"
    default_schedule = "every 1h"
    default_timeout_seconds = 120.0
    Options = DynamoDBTtlOptions

    def _run(self) -> Outcome:
        settings = self.context.config.dynamodb
        state = dynamodb.shared_state(self.context.aws)
        metrics = self.context.metrics
        enabled_gauge = metrics.series(catalogue.DYNAMODB_TTL_ENABLED)
        tables = [t for t in dynamodb.expected_tables(settings) if t.ttl_attribute]
        if not tables:
            return Outcome.ok("no expected table uses TTL ([dynamodb] expected_tables)")
        attribute = self.options.attribute
        walk = TableWalk(
            self.context, state, lambda spec: enabled_gauge.labels(table=spec.name).set(0)
        )
        findings, details = walk.findings, walk.details
        notes: list[str] = []
        for spec, table in walk.present(tables):
            ttl = state.time_to_live(spec.name) or {}
            status = ttl.get("TimeToLiveStatus", "DISABLED")
            on_attribute = ttl.get("AttributeName")
            entry: dict[str, Any] = {"ttl_status": status, "ttl_attribute": on_attribute}
            details[spec.name] = entry
            enabled = False
            if status in ("ENABLED", "ENABLING") and on_attribute != attribute:
                findings.append(
                    f"TTL on {spec.name} uses attribute {on_attribute}, expected {attribute}"
                )
            elif status == "ENABLED":
                enabled = True
            elif status == "ENABLING":
                enabled = True
                notes.append(f"TTL is ENABLING on {spec.name} (in progress)")
            else:
                findings.append(f"TTL is {status} on {spec.name}")
            enabled_gauge.labels(table=spec.name).set(1 if enabled else 0)
            if self.options.backlog_scan:
                backlog = self._backlog(spec.name, table)
                entry["backlog"] = backlog
                finding = self._backlog_finding(spec.name, backlog)
                if finding:
                    findings.append(finding)
                elif backlog["expired_items"]:
                    notes.append(
                        f"{backlog['expired_items']} expired items in {spec.name}, oldest "
                        f"{_age_text(backlog['oldest_expired_age_seconds'])}"
                    )

        summary_notes = "; ".join(notes)
        if findings:
            summary = "; ".join(findings + notes)
            return Outcome.problem(summary, tables=details, problems=findings)
        names = ", ".join(spec.name for spec in tables)
        summary = f"TTL is on for {names} ({attribute})"
        if summary_notes:
            summary += f"; {summary_notes}"
        return Outcome.ok(summary, tables=details, problems=[])

    def _backlog(self, name: str, table: dict[str, Any]) -> dict[str, Any]:
        options = self.options
        now = self.context.clock()
        cutoff = int(now - options.grace_seconds)
        deadline = time.monotonic() + min(options.scan_seconds, self.context.seconds_left())
        result = dynamodb.parallel_scan(
            self.context.aws.dynamodb(),
            name,
            segments=options.scan_segments,
            deadline=deadline,
            stop_requested=self.context.should_stop,
            read_units_budget=options.scan_read_units,
            read_units_per_second=options.scan_read_units_per_second,
            page_size=options.scan_page_size,
            filter_expression="#t < :cutoff",
            names={"#t": options.attribute},
            values={":cutoff": {"N": str(cutoff)}},
            minimum_of="#t",
        )
        self.context.raise_if_stopping()
        estimate = float(result.matched)
        item_count = table.get("ItemCount", 0)
        if not result.complete and result.scanned and item_count > result.scanned:
            # Extrapolate from the part scanned; ItemCount is AWS' ~6-hourly figure.
            estimate = result.matched * item_count / result.scanned
        oldest_age = max(0.0, now - result.minimum) if result.minimum is not None else 0.0
        metrics = self.context.metrics
        metrics.series(catalogue.DYNAMODB_TTL_EXPIRED_ITEMS).labels(table=name).set(round(estimate))
        metrics.series(catalogue.DYNAMODB_TTL_OLDEST_EXPIRED_AGE).labels(table=name).set(oldest_age)
        return {
            "expired_items": round(estimate),
            "expired_items_found": result.matched,
            "oldest_expired_age_seconds": round(oldest_age, 1),
            "scanned_items": result.scanned,
            "read_units": round(result.read_units, 1),
            "complete": result.complete,
            "stopped_by": result.stopped_by,
            "estimated": not result.complete,
        }

    def _backlog_finding(self, name: str, backlog: dict[str, Any]) -> str:
        age = backlog["oldest_expired_age_seconds"]
        if backlog["expired_items_found"] and age > self.options.max_backlog_age_seconds:
            qualifier = "" if backlog["complete"] else "about "
            return (
                f"{qualifier}{backlog['expired_items']} expired items still in {name}, "
                f"oldest {_age_text(age)} (max_backlog_age_seconds "
                f"{self.options.max_backlog_age_seconds:g})"
            )
        return ""


def _age_text(seconds: float) -> str:
    if seconds >= 86400:
        return f"expired {seconds / 86400:.1f} days ago"
    if seconds >= 3600:
        return f"expired {seconds / 3600:.1f} hours ago"
    return f"expired {seconds:.0f} s ago"

"""``rds-backup``: RDS and Aurora automated backups, as ``dynamodb-pitr`` for the PostgreSQL side.

When ActingWeb's PostgreSQL is an RDS instance or an Aurora cluster, AWS takes the backups:
a daily automated snapshot plus transaction logs for point-in-time restore, kept for
``BackupRetentionPeriod`` days. AWS Config can say the period is set; it cannot say that the
newest snapshot is recent or that ``LatestRestorableTime`` is current. This check reads both,
the retention, deletion protection and storage encryption, with ``Describe*`` calls only.

It is off until ``instance`` or ``cluster`` names what to check: enabled by default, it reports
``skipped`` with that reason, and ``awops jobs`` shows it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from awops import rds
from awops.abc import Job
from awops.errors import JobError
from awops.metrics import GaugeSeries, GaugeSpec, catalogue
from awops.registry import register
from awops.result import Outcome
from awops.settings import setting

if TYPE_CHECKING:
    from awops.config import Config
    from awops.rds import BackupState

logger = logging.getLogger(__name__)

_RDS_IDENTIFIER = re.compile(r"[A-Za-z](?:-?[A-Za-z0-9])*")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+")


def _rds_identifier(value: str) -> str | None:
    if value and (len(value) > 63 or not _RDS_IDENTIFIER.fullmatch(value)):
        return (
            "an RDS identifier: 1 to 63 letters, digits or hyphens, starting with a letter, "
            "no two hyphens in a row or at the end"
        )
    return None


def _region(value: str) -> str | None:
    if value and not _REGION.fullmatch(value):
        return "an AWS region such as eu-west-1, or empty for [dynamodb] region"
    return None


def _http_url(value: str) -> str | None:
    if value and urlsplit(value).scheme not in ("http", "https"):
        return "an http:// or https:// URL, or empty for boto3's AWS_ENDPOINT_URL_RDS or AWS"
    return None


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class RdsBackupOptions:
    instance: str = setting(
        "", check=_rds_identifier, doc="DBInstanceIdentifier of an RDS instance to check"
    )
    cluster: str = setting(
        "", check=_rds_identifier, doc="DBClusterIdentifier of an Aurora (or Multi-AZ) cluster"
    )
    region: str = setting("", check=_region, doc="empty = [dynamodb] region (AWS_DEFAULT_REGION)")
    endpoint_url: str = setting(
        "", check=_http_url, doc="RDS API endpoint; empty = AWS_ENDPOINT_URL_RDS, else AWS"
    )
    min_retention_days: int = setting(
        7, minimum=1, maximum=35, doc="BackupRetentionPeriod must be at least this"
    )
    max_latest_restorable_age_seconds: float = setting(
        900.0, minimum=0, doc="LatestRestorableTime may be this old (RDS trails by about 5 min)"
    )
    max_snapshot_age_seconds: float = setting(
        26 * 3600.0,
        minimum=0,
        doc="the newest automated snapshot may be this old (RDS takes one a day)",
    )
    require_deletion_protection: bool = setting(True, doc="DeletionProtection off is a problem")
    require_storage_encrypted: bool = setting(True, doc="unencrypted storage is a problem")


@register
class RdsBackup(Job[RdsBackupOptions]):
    name = "rds-backup"
    backend = "postgresql"
    description = (
        "RDS/Aurora automated backups: retention, point-in-time restore lag, newest automated "
        "snapshot, deletion protection, encryption"
    )
    default_schedule = "every 15m"
    default_timeout_seconds = 120.0
    Options = RdsBackupOptions
    configure_hint = "[jobs.rds-backup] instance or cluster"

    @classmethod
    def unconfigured_reason(cls, options: RdsBackupOptions, config: Config) -> str | None:
        if not options.instance and not options.cluster:
            return "no instance or cluster set"
        return None

    def _run(self) -> Outcome:
        options = self.options
        client = self.context.aws.rds(options.endpoint_url, options.region)
        wanted = [("instance", options.instance), ("cluster", options.cluster)]
        findings: list[str] = []
        errors: list[str] = []
        resources: dict[str, Any] = {}
        healthy: list[str] = []
        for kind, identifier in wanted:
            if not identifier:
                continue
            self.context.raise_if_stopping()
            resource = f"{kind}/{identifier}"
            try:
                if kind == "instance":
                    state = rds.read_instance(client, identifier)
                else:
                    state = rds.read_cluster(client, identifier)
            except JobError as exc:
                # Not healthy: what cannot be read is reported as unavailable, never as fine.
                self._gauge(catalogue.RDS_AVAILABLE).labels(resource=resource).set(0)
                errors.append(str(exc))
                resources[resource] = {"error": str(exc)}
                continue
            found, entry = self._judge(state)
            resources[resource] = entry
            findings += found
            if not found:
                healthy.append(_summary_of(state, entry))

        details = {"resources": resources, "problems": findings, "errors": errors}
        if errors:
            return Outcome.error("; ".join(errors + findings), **details)
        if findings:
            return Outcome.problem("; ".join(findings), **details)
        return Outcome.ok("; ".join(healthy), **details)

    def _gauge(self, spec: GaugeSpec) -> GaugeSeries:
        return self.context.metrics.series(spec)

    def _judge(self, state: BackupState) -> tuple[list[str], dict[str, Any]]:
        """Record ``state``'s metrics; return its shortfalls and its ``details`` entry."""
        options = self.options
        now = self.context.clock()
        resource = state.resource
        label = {"resource": resource}
        found: list[str] = []
        entry: dict[str, Any] = {
            "status": state.status,
            "engine": state.engine,
            "backup_retention_days": state.retention_days,
            "deletion_protection": state.deletion_protection,
            "storage_encrypted": state.storage_encrypted,
            "automated_snapshots": state.automated_snapshots,
        }
        # A stopped or failed resource takes no backups: say so where the figures fall behind.
        status_note = "" if state.available else f" (status {state.status})"
        self._gauge(catalogue.RDS_AVAILABLE).labels(**label).set(1 if state.available else 0)
        self._gauge(catalogue.RDS_BACKUP_RETENTION_PERIOD).labels(**label).set(
            state.retention_days * 86400
        )
        self._gauge(catalogue.RDS_DELETION_PROTECTION).labels(**label).set(
            int(state.deletion_protection)
        )
        self._gauge(catalogue.RDS_STORAGE_ENCRYPTED).labels(**label).set(
            int(state.storage_encrypted)
        )
        self._gauge(catalogue.RDS_AUTOMATED_SNAPSHOTS).labels(**label).set(
            state.automated_snapshots
        )

        backups_enabled = state.retention_days > 0
        if not backups_enabled:
            found.append(
                f"{resource} has automated backups disabled (BackupRetentionPeriod 0): "
                "no point-in-time restore, no automated snapshots"
            )
        elif state.retention_days < options.min_retention_days:
            found.append(
                f"{resource} keeps automated backups {state.retention_days} day(s), under "
                f"min_retention_days {options.min_retention_days}"
            )

        age_gauge = self._gauge(catalogue.RDS_LATEST_RESTORABLE_AGE)
        if state.latest_restorable is None:
            _forget(age_gauge, resource)
            entry["latest_restorable_age_seconds"] = None
            if backups_enabled:
                found.append(
                    f"{resource} has no LatestRestorableTime: no point-in-time restore{status_note}"
                )
        else:
            age = max(0.0, now - state.latest_restorable)
            age_gauge.labels(**label).set(age)
            entry["latest_restorable_age_seconds"] = round(age, 1)
            if age > options.max_latest_restorable_age_seconds:
                found.append(
                    f"{resource} LatestRestorableTime is {age:.0f} s old "
                    f"(max_latest_restorable_age_seconds "
                    f"{options.max_latest_restorable_age_seconds:g}){status_note}"
                )

        snapshot_gauge = self._gauge(catalogue.RDS_SNAPSHOT_AGE)
        if state.newest_snapshot is None:
            _forget(snapshot_gauge, resource)
            entry["newest_snapshot_age_seconds"] = None
            if backups_enabled:
                found.append(f"{resource} has no available automated snapshot{status_note}")
        else:
            age = max(0.0, now - state.newest_snapshot)
            snapshot_gauge.labels(**label).set(age)
            self._gauge(catalogue.BACKUP_LAST_SUCCESS).labels(backend="rds", target=resource).set(
                state.newest_snapshot
            )
            entry["newest_snapshot_age_seconds"] = round(age, 1)
            if age > options.max_snapshot_age_seconds:
                found.append(
                    f"{resource} newest automated snapshot is {age / 3600:.1f} h old "
                    f"(max_snapshot_age_seconds {options.max_snapshot_age_seconds:g})"
                    f"{status_note}"
                )

        if options.require_deletion_protection and not state.deletion_protection:
            found.append(f"{resource} has DeletionProtection off")
        if options.require_storage_encrypted and not state.storage_encrypted:
            found.append(f"{resource} storage is not encrypted (StorageEncrypted false)")
        return found, entry


def _summary_of(state: BackupState, entry: dict[str, Any]) -> str:
    parts = [f"automated backups kept {state.retention_days} days"]
    if entry.get("latest_restorable_age_seconds") is not None:
        parts.append(f"restorable to {entry['latest_restorable_age_seconds']:.0f} s ago")
    snapshot_age = entry.get("newest_snapshot_age_seconds")
    if snapshot_age is not None:
        parts.append(f"newest automated snapshot {snapshot_age / 3600:.1f} h old")
    parts.append("deletion protection " + ("on" if state.deletion_protection else "off"))
    parts.append("storage " + ("encrypted" if state.storage_encrypted else "not encrypted"))
    return f"{state.resource}: " + ", ".join(parts)


def _forget(gauge: GaugeSeries, resource: str) -> None:
    """Drop a series whose figure no longer exists, so no stale age stays on /metrics."""
    with contextlib.suppress(KeyError):
        gauge.remove(resource)

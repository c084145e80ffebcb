"""What a restore will do, decided before anything is created.

:func:`parse_request` checks the command line without asking AWS (exit 2 on a mistake).
:func:`plan_restore` then reads, and only reads: the source tables and their settings, their
PITR windows or the named backups, and whether any target table exists. It refuses with every
reason at once (exit 1), so a refused restore has created nothing.

All tables go back to **one** instant. With ``--time`` it is that time, which must lie inside
every table's restore window; by default it is the latest time every table can reach: the
earliest of the tables' ``LatestRestorableDateTime``, which must not be before any table's
``EarliestRestorableDateTime``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from awops.dynamodb import ExpectedTable, expected_tables, translated_errors
from awops.dynamodb_restore._aws import describe_table_or_none, epoch_or_none, iso
from awops.dynamodb_restore.errors import RestoreRefused, RestoreUsageError
from awops.dynamodb_restore.snapshot import TableSettings, read_settings, settings_from_backup
from awops.settings import dynamodb_name_part

BACKUP_ARN = re.compile(r"arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:\d{12}:table/([^/]+)/backup/[^/]+")
_TABLE_NAME_MAX = 255
_FUTURE_SLACK_SECONDS = 60.0


@dataclass
class RestoreRequest:
    """A checked command line: the tables chosen, the target prefix, where to restore from."""

    source_prefix: str
    to_prefix: str
    tables: list[ExpectedTable]
    time: float | None = None  # --time, epoch seconds
    backup_arns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "backup" if self.backup_arns else "pitr"

    def target_name(self, table: ExpectedTable) -> str:
        return f"{self.to_prefix}_{table.suffix}"


@dataclass
class TablePlan:
    table: ExpectedTable
    source: str
    target: str
    settings: TableSettings  # the source's, read at planning
    backup_arn: str = ""
    backup_created: float | None = None  # the backup's creation time, epoch
    window: tuple[float, float] | None = None  # PITR (earliest, latest) restorable, epoch

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"source": self.source, "restored": self.target}
        if self.backup_arn:
            document["backup"] = self.backup_arn
        if self.backup_created is not None:
            document["backup_created"] = iso(self.backup_created)
        if self.window:
            document["window"] = {"earliest": iso(self.window[0]), "latest": iso(self.window[1])}
        return document


@dataclass
class RestorePlan:
    source_prefix: str
    to_prefix: str
    mode: str  # "pitr" or "backup"
    instant: float | None  # the one PITR instant; None when restoring from backups
    tables: list[TablePlan]


def parse_time(text: str, now: float) -> float:
    """An ISO 8601 time with a zone (``Z`` or ``+02:00``) as epoch seconds; never the future."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RestoreUsageError(
            f"--time {text!r}: expected an ISO 8601 time such as 2026-12-05T09:14:00Z"
        ) from None
    if moment.tzinfo is None:
        raise RestoreUsageError(
            f"--time {text!r}: give the zone (2026-12-05T09:14:00Z for UTC, or +02:00): "
            "a time without one is ambiguous"
        )
    value = moment.timestamp()
    if value > now + _FUTURE_SLACK_SECONDS:
        raise RestoreUsageError(f"--time {text!r} is in the future (now is {iso(now)})")
    return value


def parse_request(
    settings: Any,
    to_prefix: str,
    time_text: str | None,
    backup_arns: list[str],
    suffixes: list[str],
    now: float,
) -> RestoreRequest:
    """Check the command line against the configuration (``[dynamodb]``), without AWS."""
    if time_text is not None and backup_arns:
        raise RestoreUsageError("--time and --backup exclude each other: give one of them")
    if suffixes and backup_arns:
        raise RestoreUsageError(
            "--table and --backup exclude each other: the backups name the tables"
        )
    problem = dynamodb_name_part(to_prefix)
    if problem:
        raise RestoreUsageError(f"--to-prefix {to_prefix!r}: expected {problem}")
    if to_prefix == settings.prefix:
        raise RestoreUsageError(
            f"--to-prefix {to_prefix!r} is the source prefix (AWS_DB_PREFIX); a restore always "
            "goes to new tables under another prefix"
        )
    known = {table.suffix: table for table in expected_tables(settings)}
    unknown = [suffix for suffix in suffixes if suffix not in known]
    if unknown:
        raise RestoreUsageError(
            f"--table {', '.join(unknown)}: not an expected table; expected one of "
            f"{', '.join(known)}"
        )
    chosen = [known[s] for s in dict.fromkeys(suffixes)] if suffixes else list(known.values())
    for arn in backup_arns:
        if not BACKUP_ARN.fullmatch(arn):
            raise RestoreUsageError(
                f"--backup {arn!r}: expected a DynamoDB backup ARN "
                "(arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/backup/ID)"
            )
    request = RestoreRequest(settings.prefix, to_prefix, chosen, backup_arns=list(backup_arns))
    if to_prefix.startswith(f"{settings.prefix}_"):
        request.warnings.append(
            f"the restored tables {to_prefix}_* lie under the source prefix {settings.prefix}_: "
            "dynamodb-gsi of the source deployment will report them as unexpected tables"
        )
    if time_text is not None:
        request.time = parse_time(time_text, now)
    for table in chosen:
        if len(request.target_name(table)) > _TABLE_NAME_MAX:
            raise RestoreUsageError(f"--to-prefix {to_prefix!r}: table names would pass 255 bytes")
    return request


def _milliseconds(epoch_seconds: float) -> float:
    """Cut to whole milliseconds, AWS' precision, so the instant reported is the one asked for."""
    return math.floor(round(epoch_seconds * 1000, 3)) / 1000


def choose_instant(windows: dict[str, tuple[float, float]], wanted: float | None) -> float:
    """The one instant every table is restored to (see the module doc); refuses with why."""
    if wanted is not None:
        wanted = _milliseconds(wanted)
        misses = [
            f"{name} can be restored from {iso(earliest)} to {iso(latest)}, not to {iso(wanted)}"
            for name, (earliest, latest) in windows.items()
            if not earliest <= wanted <= latest
        ]
        if misses:
            raise RestoreRefused(misses)
        return wanted
    latest_common = _milliseconds(min(latest for _, latest in windows.values()))
    earliest_common = max(earliest for earliest, _ in windows.values())
    if latest_common < earliest_common:
        late = max(windows, key=lambda name: windows[name][0])
        early = min(windows, key=lambda name: windows[name][1])
        raise RestoreRefused(
            [
                f"no instant every table can reach: {early} can be restored up to "
                f"{iso(latest_common)}, {late} only from {iso(earliest_common)}"
            ]
        )
    return latest_common


def plan_restore(
    client: Any, autoscaling: Callable[[], Any], request: RestoreRequest
) -> RestorePlan:
    """Read everything the restore needs and refuse, with every reason, if it cannot go ahead."""
    reasons: list[str] = []
    plans: list[TablePlan] = []
    backups = _describe_backups(client, request, reasons) if request.backup_arns else {}
    tables = request.tables
    if request.backup_arns:
        tables = [table for table in request.tables if table.name in backups]
    for table in tables:
        target = request.target_name(table)
        if describe_table_or_none(client, target) is not None:
            reasons.append(f"target table {target} exists; a restore never overwrites a table")
        settings = read_settings(client, table.name, autoscaling)
        if request.backup_arns:
            arn, backup = backups[table.name]
            if settings is None:
                settings = settings_from_backup(backup, table.name, table.ttl_attribute)
            created = epoch_or_none(backup["BackupDetails"].get("BackupCreationDateTime"))
            plans.append(
                TablePlan(table, table.name, target, settings, arn, backup_created=created)
            )
            continue
        if settings is None:
            reasons.append(f"source table {table.name} does not exist; restore it from a backup")
            continue
        window = _window(client, table.name)
        if window is None:
            reasons.append(f"PITR is not ENABLED on {table.name}; restore it from a backup")
            continue
        plans.append(TablePlan(table, table.name, target, settings, window=window))
    if reasons:
        raise RestoreRefused(reasons)
    instant = None
    if request.mode == "pitr":
        instant = choose_instant({p.source: p.window for p in plans if p.window}, request.time)
    return RestorePlan(request.source_prefix, request.to_prefix, request.mode, instant, plans)


def _window(client: Any, name: str) -> tuple[float, float] | None:
    with translated_errors(client, f"DescribeContinuousBackups {name}"):
        answer = client.describe_continuous_backups(TableName=name)
    pitr = answer["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription") or {}
    earliest = epoch_or_none(pitr.get("EarliestRestorableDateTime"))
    latest = epoch_or_none(pitr.get("LatestRestorableDateTime"))
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED" or earliest is None or latest is None:
        return None
    return earliest, latest


def _describe_backups(
    client: Any, request: RestoreRequest, reasons: list[str]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Table name -> (ARN, ``DescribeBackup``'s description) of each ``--backup``."""
    by_table: dict[str, tuple[str, dict[str, Any]]] = {}
    expected = {table.name for table in request.tables}
    for arn in request.backup_arns:
        with translated_errors(client, f"DescribeBackup {arn}"):
            try:
                description = client.describe_backup(BackupArn=arn)["BackupDescription"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "BackupNotFoundException":
                    reasons.append(f"backup {arn} does not exist")
                    continue
                raise
        table = (description.get("SourceTableDetails") or {}).get("TableName", "")
        status = description["BackupDetails"].get("BackupStatus")
        if table not in expected:
            reasons.append(
                f"backup {arn} is of table {table or '?'}, not one of the expected tables "
                f"{request.source_prefix}_*"
            )
        elif table in by_table:
            reasons.append(f"two backups of {table} given; give one per table")
        elif status != "AVAILABLE":
            reasons.append(f"backup {arn} is {status}, not AVAILABLE")
        else:
            by_table[table] = (arn, description)
    return by_table

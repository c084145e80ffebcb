"""``dynamodb-restore-verify``: prove PITR restores work by restoring into scratch tables.

Each table is restored to its latest restorable time into ``awops-verify-<table>-<stamp>``
(on-demand billing, whatever the source uses), awaited until ACTIVE, and its item count
compared with the source's within a tolerance. Then, as ``awops restore dynamodb`` does, the
settings AWS does not restore (TTL, PITR, tags, stream, deletion protection, capacity, auto
scaling) are re-applied from the source and every setting is compared, so the drill proves
the whole restore path. The scratch tables are deleted whatever happens (deletion protection,
PITR and auto scaling switched off first, so no system backup outlives them); a scratch table
left behind by a run that was killed is deleted by the next run.

It costs money: AWS bills a restore per GB of the table restored, the scratch table's storage
while it exists, and with ``count_method = "scan"`` (exact) the read units of scanning both
tables. ``count_method = "describe"`` uses DescribeTable's ItemCount instead, which is free but
refreshed by AWS only about every six hours.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from awops import dynamodb
from awops.abc import Job
from awops.aws import epoch
from awops.errors import JobError
from awops.metrics import catalogue
from awops.registry import register
from awops.result import Outcome
from awops.settings import dynamodb_name_list, setting

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = "awops-verify-"
_TABLE_NAME_MAX = 255


@dataclass(eq=False)  # compared by nobody; cheaper to define at start-up
class DynamoDBRestoreVerifyOptions:
    tables: list[str] = setting(
        [], check=dynamodb_name_list, doc="table suffixes to restore; empty = every expected table"
    )
    restore_timeout_seconds: float = setting(
        3600.0, minimum=1, doc="a restore not ACTIVE after this long fails"
    )
    poll_seconds: float = setting(15.0, minimum=0.01, doc="DescribeTable interval while waiting")
    count_method: str = setting(
        "scan", choices=("scan", "describe"), doc="scan: exact, costs reads; describe: ItemCount"
    )
    scan_segments: int = setting(4, minimum=1, maximum=64, doc="parallel segments when counting")
    max_count_difference_percent: float = setting(
        1.0, minimum=0, doc="allowed item-count difference, percent of the source"
    )
    max_count_difference_items: int = setting(
        10, minimum=0, doc="allowed item-count difference in items (the larger allowance wins)"
    )
    verify_settings: bool = setting(
        True, doc="re-apply the source's settings to the scratch table and compare them"
    )


class _Restore:
    """One restore in flight (a plain class: dataclasses cost start-up time)."""

    def __init__(
        self, source: str, scratch: str, started: float, restore_point: float | None
    ) -> None:
        self.source = source
        self.scratch = scratch
        self.started = started
        self.restore_point = restore_point
        self.duration_seconds: float | None = None
        self.status = "RESTORING"
        self.result: dict[str, Any] = {}


def scratch_name(table: str, stamp: str) -> str:
    room = _TABLE_NAME_MAX - len(SCRATCH_PREFIX) - len(stamp) - 1
    return f"{SCRATCH_PREFIX}{table[:room]}-{stamp}"


@register
class DynamoDBRestoreVerify(Job[DynamoDBRestoreVerifyOptions]):
    name = "dynamodb-restore-verify"
    backend = "dynamodb"
    description = "PITR restore into a scratch table, item counts compared, scratch deleted"
    default_schedule = "0 4 * * 0"
    default_enabled = False
    default_timeout_seconds = 7200.0
    changes_data = True
    Options = DynamoDBRestoreVerifyOptions

    def _run(self) -> Outcome:
        settings = self.context.config.dynamodb
        client = self.context.aws.dynamodb()
        now = self.context.clock()
        stamp = dynamodb.utc_stamp(now)
        sources = dynamodb.table_names(settings, self.options.tables)
        if self.context.dry_run:
            plan = {table: scratch_name(table, stamp) for table in sources}
            return Outcome.ok(
                f"would restore {len(plan)} table(s) into {SCRATCH_PREFIX}* scratch tables",
                plan=plan,
                dry_run=True,
            )
        leftovers = self._delete_leftovers(client, now)
        findings: list[str] = []
        restores: list[_Restore] = []
        cleanup_failures: list[str] = []
        try:
            for table in sources:
                self.context.raise_if_stopping()
                restore = self._start(client, table, scratch_name(table, stamp), findings)
                if restore is not None:
                    restores.append(restore)
            self._wait_active(client, restores, findings)
            for restore in restores:
                if restore.status == "ACTIVE":
                    self.context.raise_if_stopping()
                    self._compare(client, restore, findings)
                    if self.options.verify_settings:
                        self.context.raise_if_stopping()
                        self._verify_settings(client, restore, findings)
                    if restore.status == "VERIFIED":
                        self.context.metrics.series(catalogue.BACKUP_VERIFY_LAST_SUCCESS).labels(
                            backend="dynamodb", target=restore.source
                        ).set(self.context.clock())
        finally:
            for restore in restores:
                failure = self._delete_scratch(client, restore.scratch)
                if failure:
                    cleanup_failures.append(failure)

        details = {
            "restores": {
                r.source: {
                    "scratch_table": r.scratch,
                    "status": r.status,
                    "restore_seconds": r.duration_seconds,
                    **r.result,
                }
                for r in restores
            },
            "problems": findings,
            "deleted_leftovers": leftovers,
        }
        if cleanup_failures:
            return Outcome.error("; ".join(cleanup_failures + findings), **details)
        if findings:
            return Outcome.problem("; ".join(findings), **details)
        slowest = max((r.duration_seconds or 0.0 for r in restores), default=0.0)
        return Outcome.ok(
            f"restored {len(restores)} table(s) and matched their item counts; "
            f"slowest restore {slowest:.0f} s",
            **details,
        )

    def _start(self, client: Any, table: str, scratch: str, findings: list[str]) -> _Restore | None:
        from botocore.exceptions import ClientError

        with dynamodb.translated_errors(client, f"DescribeContinuousBackups {table}"):
            try:
                backups = client.describe_continuous_backups(TableName=table)
            except ClientError as exc:
                if dynamodb.error_code(exc) in (
                    "TableNotFoundException",
                    "ResourceNotFoundException",
                ):
                    findings.append(f"{table} is missing")
                    return None
                raise
        pitr = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription") or {}
        if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
            findings.append(f"PITR is not ENABLED on {table}; nothing to restore from")
            return None
        restore_point = epoch(pitr.get("LatestRestorableDateTime"))
        started = time.monotonic()
        with dynamodb.translated_errors(client, f"RestoreTableToPointInTime {table}"):
            client.restore_table_to_point_in_time(
                SourceTableName=table,
                TargetTableName=scratch,
                UseLatestRestorableTime=True,
                BillingModeOverride="PAY_PER_REQUEST",
            )
        logger.info("restoring %s into scratch table %s", table, scratch)
        return _Restore(table, scratch, started, restore_point)

    def _wait_active(self, client: Any, restores: list[_Restore], findings: list[str]) -> None:
        timeout = self.options.restore_timeout_seconds
        pending = list(restores)
        while pending:
            for restore in list(pending):
                with dynamodb.translated_errors(client, f"DescribeTable {restore.scratch}"):
                    status = client.describe_table(TableName=restore.scratch)["Table"].get(
                        "TableStatus", "UNKNOWN"
                    )
                elapsed = time.monotonic() - restore.started
                if status == "ACTIVE":
                    restore.status = "ACTIVE"
                    restore.duration_seconds = round(elapsed, 3)
                    pending.remove(restore)
                    self.context.metrics.series(catalogue.DYNAMODB_RESTORE_DURATION).labels(
                        table=restore.source
                    ).set(elapsed)
                elif elapsed > timeout:
                    restore.status = "TIMED_OUT"
                    pending.remove(restore)
                    findings.append(
                        f"restore of {restore.source} not ACTIVE after {timeout:g} s "
                        f"(restore_timeout_seconds; status {status})"
                    )
            if pending:
                # A pause that a stop request cuts short; the stop then ends the run here.
                self.context.should_stop(wait_seconds=self.options.poll_seconds)
                self.context.raise_if_stopping()

    def _compare(self, client: Any, restore: _Restore, findings: list[str]) -> None:
        source_count = self._count(client, restore.source)
        scratch_count = self._count(client, restore.scratch)
        difference = scratch_count - source_count
        allowed = max(
            self.options.max_count_difference_items,
            source_count * self.options.max_count_difference_percent / 100,
        )
        restore.result = {
            "source_items": source_count,
            "restored_items": scratch_count,
            "difference": difference,
            "allowed_difference": round(allowed, 1),
            "restore_point": restore.restore_point,
        }
        if abs(difference) > allowed:
            restore.status = "MISMATCH"
            findings.append(
                f"restore of {restore.source} has {scratch_count} items, the table "
                f"{source_count} (allowed difference {allowed:.0f})"
            )
            return
        restore.status = "VERIFIED"

    def _pacing(self) -> Any:
        from awops.dynamodb_restore._aws import Pacing

        return Pacing(self.context.deadline, self.context.stop_event, self.options.poll_seconds)

    def _verify_settings(self, client: Any, restore: _Restore, findings: list[str]) -> None:
        """Re-apply the source's settings to the scratch table and compare them."""
        from awops.dynamodb_restore.apply import OK, SettingsApplier
        from awops.dynamodb_restore.compare import compare_settings
        from awops.dynamodb_restore.snapshot import read_settings

        autoscaling = self.context.aws.application_autoscaling
        source = read_settings(client, restore.source, autoscaling)
        if source is None:
            raise JobError(f"{restore.source} disappeared during the verification")
        applied = SettingsApplier(client, autoscaling, self._pacing()).apply(
            source, restore.scratch
        )
        restored = read_settings(client, restore.scratch, autoscaling)
        if restored is None:
            raise JobError(f"scratch table {restore.scratch} disappeared")
        comparison = compare_settings(source, restored)
        restore.result["settings"] = applied
        restore.result["comparison"] = [row.as_json() for row in comparison]
        problems = [f"{name} {result}" for name, result in applied.items() if result != OK]
        problems += [
            f"{row.setting} differs (source {row.source}, restored {row.restored})"
            for row in comparison
            if not row.match
        ]
        if problems:
            restore.status = "SETTINGS_MISMATCH" if restore.status == "VERIFIED" else restore.status
            findings.append(f"settings of {restore.source} on its restore: {'; '.join(problems)}")

    def _count(self, client: Any, table: str) -> int:
        if self.options.count_method == "describe":
            with dynamodb.translated_errors(client, f"DescribeTable {table}"):
                return int(client.describe_table(TableName=table)["Table"].get("ItemCount", 0))
        result = dynamodb.parallel_scan(
            client,
            table,
            segments=self.options.scan_segments,
            deadline=time.monotonic() + max(0.0, self.context.seconds_left()),
            stop_requested=self.context.should_stop,
        )
        self.context.raise_if_stopping()
        if not result.complete:
            raise JobError(f"counting {table} stopped early ({result.stopped_by})")
        return result.matched

    def _delete_scratch(self, client: Any, scratch: str) -> str:
        """Delete a scratch table; returns what went wrong, or ''."""
        from botocore.exceptions import BotoCoreError, ClientError

        from awops.dynamodb_restore._aws import Pacing
        from awops.dynamodb_restore.apply import prepare_for_deletion

        try:
            # Cleanup runs on stop and timeout too, with a few minutes of its own.
            cleanup = Pacing(time.monotonic() + 300, threading.Event(), self.options.poll_seconds)
            prepare_for_deletion(client, self.context.aws.application_autoscaling, scratch, cleanup)
            client.delete_table(TableName=scratch)
            logger.info("deleted scratch table %s", scratch)
        except ClientError as exc:
            if dynamodb.error_code(exc) != "ResourceNotFoundException":
                code = dynamodb.error_code(exc)
                return f"could not delete scratch table {scratch} ({code}); delete it by hand"
        except (BotoCoreError, JobError) as exc:
            kind = type(exc).__name__
            return f"could not delete scratch table {scratch} ({kind}); delete it by hand"
        return ""

    def _delete_leftovers(self, client: Any, now: float) -> list[str]:
        """Scratch tables of earlier runs that can no longer be running."""
        horizon = self.context.config.jobs[self.name].timeout_seconds + 3600
        oldest_allowed = dynamodb.utc_stamp(now - horizon)
        with dynamodb.translated_errors(client, "ListTables"):
            names = [
                name
                for page in client.get_paginator("list_tables").paginate()
                for name in page.get("TableNames", [])
                if name.startswith(SCRATCH_PREFIX)
            ]
        deleted = []
        for name in names:
            stamp = name.rsplit("-", 1)[-1]
            stale = len(stamp) == 16 and stamp < oldest_allowed
            if stale and not self._delete_scratch(client, name):
                deleted.append(name)
                logger.warning("deleted leftover scratch table %s", name)
        return deleted

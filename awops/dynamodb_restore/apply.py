"""Re-applying a source table's settings onto a restored table, one setting at a time.

Each setting is reported on its own: ``ok`` (applied, or already as the source has it),
``failed: <why>`` or ``unknown: <why>`` (the source's value is not known). A setting that fails
does not stop the others. Every ``UpdateTable`` waits for the table and its indexes to be
ACTIVE first, and calls AWS answers with "not now" (a table being updated, PITR not yet
available on a young table) are tried again within the restore's time budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from awops.dynamodb import billing_mode
from awops.dynamodb_restore._aws import (
    Pacing,
    describe_table_or_none,
    failure_text,
    wait_active,
    with_retries,
)
from awops.dynamodb_restore.autoscaling import apply_scaling, remove_scaling
from awops.dynamodb_restore.snapshot import (
    AWS_TAG_PREFIX,
    PITR_ON,
    TTL_ON,
    TableSettings,
    read_tags,
    settings_from_description,
)

logger = logging.getLogger(__name__)

OK = "ok"
# In the order they are applied: capacity first (auto scaling needs PROVISIONED), deletion
# protection last (a table that failed half-way stays easy to delete until then).
SETTINGS = ("billing", "stream", "ttl", "pitr", "tags", "autoscaling", "deletion_protection")
_TAGS_PER_CALL = 50


class _Unknown(Exception):
    """The source's value of a setting is unknown; nothing was applied."""


class SettingsApplier:
    """Applies :class:`TableSettings` of a source onto another table.

    ``autoscaling`` returns the Application Auto Scaling client; it is called only when the
    source has targets to copy.
    """

    def __init__(self, client: Any, autoscaling: Callable[[], Any], pacing: Pacing) -> None:
        self.client = client
        self.autoscaling = autoscaling
        self.pacing = pacing

    def apply(self, source: TableSettings, target: str) -> dict[str, str]:
        """Each setting of :data:`SETTINGS` and what became of it on ``target``."""
        steps: dict[str, Callable[[TableSettings, str], None]] = {
            "billing": self._billing,
            "stream": self._stream,
            "ttl": self._ttl,
            "pitr": self._pitr,
            "tags": self._tags,
            "autoscaling": self._autoscaling,
            "deletion_protection": self._deletion_protection,
        }
        results: dict[str, str] = {}
        for name in SETTINGS:
            if self.pacing.stopping():
                results[name] = "failed: not applied, stop requested"
                continue
            try:
                steps[name](source, target)
            except _Unknown as exc:
                results[name] = f"unknown: {exc}"
            except Exception as exc:
                results[name] = f"failed: {failure_text(exc)}"
            else:
                results[name] = OK
            if results[name] != OK:
                logger.warning("%s: %s %s", target, name, results[name])
        logger.info(
            "%s: settings re-applied from %s (%d of %d ok)",
            target,
            source.name,
            sum(1 for r in results.values() if r == OK),
            len(results),
        )
        return results

    # --- one method per setting ----------------------------------------------------------------

    def _update_table(self, target: str, what: str, **request: Any) -> None:
        wait_active(self.client, target, self.pacing)
        with_retries(
            lambda: self.client.update_table(TableName=target, **request),
            f"UpdateTable {target} ({what})",
            self.pacing,
        )
        logger.info("%s: %s set", target, what)

    def _billing(self, source: TableSettings, target: str) -> None:
        current = wait_active(self.client, target, self.pacing)
        have = billing_mode(current)
        if source.billing_mode != "PROVISIONED":
            if have != "PAY_PER_REQUEST":
                self._update_table(target, "billing mode", BillingMode="PAY_PER_REQUEST")
            return
        request: dict[str, Any] = {}
        switching = have != "PROVISIONED"
        units = current.get("ProvisionedThroughput") or {}
        have_units = (units.get("ReadCapacityUnits", 0), units.get("WriteCapacityUnits", 0))
        if source.throughput and (switching or have_units != source.throughput):
            request["ProvisionedThroughput"] = _units(source.throughput)
        index_units = {
            index["IndexName"]: index.get("ProvisionedThroughput") or {}
            for index in current.get("GlobalSecondaryIndexes", [])
        }
        updates = []
        for name, index in sorted(source.gsis.items()):
            if index.throughput is None or name not in index_units:
                continue
            units = index_units[name]
            have_index = (units.get("ReadCapacityUnits", 0), units.get("WriteCapacityUnits", 0))
            # AWS refuses an UpdateTable that sets a capacity to what it already is.
            if switching or have_index != index.throughput:
                updates.append(
                    {
                        "Update": {
                            "IndexName": name,
                            "ProvisionedThroughput": _units(index.throughput),
                        }
                    }
                )
        if updates:
            request["GlobalSecondaryIndexUpdates"] = updates
        if switching:
            request["BillingMode"] = "PROVISIONED"
        if request:
            self._update_table(target, "billing mode and capacity", **request)

    def _stream(self, source: TableSettings, target: str) -> None:
        if source.stream is None:
            raise _Unknown(source.unknown_reason)
        current = wait_active(self.client, target, self.pacing).get("StreamSpecification") or {}
        enabled = bool(current.get("StreamEnabled"))
        view_type = current.get("StreamViewType", "")
        want = source.stream
        if enabled == want.enabled and (not enabled or view_type == want.view_type):
            return
        if enabled:  # a stream's view type cannot change; it is switched off, then on
            self._update_table(target, "stream off", StreamSpecification={"StreamEnabled": False})
        if want.enabled:
            self._update_table(
                target,
                f"stream {want.view_type}",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": want.view_type},
            )

    def _ttl(self, source: TableSettings, target: str) -> None:
        if source.ttl is None:
            raise _Unknown(source.unknown_reason)
        current = self.client.describe_time_to_live(TableName=target)["TimeToLiveDescription"]
        enabled = current.get("TimeToLiveStatus") in TTL_ON
        attribute = current.get("AttributeName", "")
        want = source.ttl
        if enabled == want.enabled and (not enabled or attribute == want.attribute):
            return
        specification = {"Enabled": want.enabled, "AttributeName": want.attribute or attribute}
        with_retries(
            lambda: self.client.update_time_to_live(
                TableName=target, TimeToLiveSpecification=specification
            ),
            f"UpdateTimeToLive {target}",
            self.pacing,
        )
        logger.info("%s: TTL %s", target, want.summary())

    def _pitr(self, source: TableSettings, target: str) -> None:
        if source.pitr is None:
            raise _Unknown(source.unknown_reason)
        answer = self.client.describe_continuous_backups(TableName=target)
        current = answer["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription") or {}
        enabled = current.get("PointInTimeRecoveryStatus") in PITR_ON
        period = current.get("RecoveryPeriodInDays")
        want = source.pitr
        if enabled == want.enabled and (not enabled or want.recovery_period_days in (None, period)):
            return
        specification: dict[str, Any] = {"PointInTimeRecoveryEnabled": want.enabled}
        if want.enabled and want.recovery_period_days is not None:
            specification["RecoveryPeriodInDays"] = want.recovery_period_days
        with_retries(
            lambda: self.client.update_continuous_backups(
                TableName=target, PointInTimeRecoverySpecification=specification
            ),
            f"UpdateContinuousBackups {target}",
            self.pacing,
        )
        logger.info("%s: PITR %s", target, want.summary())

    def _tags(self, source: TableSettings, target: str) -> None:
        if source.tags is None:
            raise _Unknown(source.unknown_reason)
        arn = wait_active(self.client, target, self.pacing)["TableArn"]
        have = read_tags(self.client, arn)
        missing = [
            {"Key": key, "Value": value}
            for key, value in sorted(source.tags.items())
            if have.get(key) != value and not key.startswith(AWS_TAG_PREFIX)
        ]
        for start in range(0, len(missing), _TAGS_PER_CALL):
            batch = missing[start : start + _TAGS_PER_CALL]
            with_retries(
                partial(self.client.tag_resource, ResourceArn=arn, Tags=batch),
                f"TagResource {target}",
                self.pacing,
            )
        if missing:
            logger.info("%s: %d tag(s) set", target, len(missing))

    def _autoscaling(self, source: TableSettings, target: str) -> None:
        if source.autoscaling is None:
            raise _Unknown(source.unknown_reason)
        if not source.autoscaling.targets:
            return
        wait_active(self.client, target, self.pacing)
        apply_scaling(self.autoscaling(), target, source.autoscaling)
        logger.info("%s: auto scaling %s", target, source.autoscaling.summary())

    def _deletion_protection(self, source: TableSettings, target: str) -> None:
        if source.deletion_protection is None:
            raise _Unknown(source.unknown_reason)
        current = wait_active(self.client, target, self.pacing)
        if bool(current.get("DeletionProtectionEnabled", False)) != source.deletion_protection:
            self._update_table(
                target,
                f"deletion protection {'on' if source.deletion_protection else 'off'}",
                DeletionProtectionEnabled=source.deletion_protection,
            )


def _units(throughput: tuple[int, int]) -> dict[str, int]:
    return {"ReadCapacityUnits": throughput[0], "WriteCapacityUnits": throughput[1]}


def prepare_for_deletion(
    client: Any, autoscaling: Callable[[], Any], name: str, pacing: Pacing
) -> None:
    """Undo what makes deleting a scratch table fail or cost: deletion protection, PITR (a
    table deleted with PITR on leaves a system backup, billed for 35 days), auto scaling.
    A table that does not exist is left alone."""
    description = describe_table_or_none(client, name)
    if description is None:
        return
    if description.get("DeletionProtectionEnabled"):
        wait_active(client, name, pacing)
        with_retries(
            partial(client.update_table, TableName=name, DeletionProtectionEnabled=False),
            f"UpdateTable {name} (deletion protection off)",
            pacing,
        )
    answer = client.describe_continuous_backups(TableName=name)
    pitr = answer["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription") or {}
    if pitr.get("PointInTimeRecoveryStatus") in PITR_ON:
        with_retries(
            partial(
                client.update_continuous_backups,
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
            ),
            f"UpdateContinuousBackups {name} (off)",
            pacing,
        )
    settings = settings_from_description(description)
    if settings.provisioned:
        remove_scaling(autoscaling(), name, sorted(settings.gsis))
    wait_active(client, name, pacing)

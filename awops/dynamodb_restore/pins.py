"""Pinned DynamoDB backups: ``dynamodb-backup``'s retention never deletes them.

DynamoDB's own backups cannot carry tags, so a pin is an item in the table where awops already
keeps its state in DynamoDB: the lock table ``<prefix>_<[lock] table>`` (``lock_key`` is
``pin#dynamodb-backup#<backup ARN>``; job leases use job names, which never start with
``pin#``). The table is created on the first pin when ``[lock] create_table`` allows it.

Only awops' own backups of this deployment's tables (``awops-<prefix>_<suffix>-<stamp>``) can
be pinned: those are the only ones retention would ever delete.
"""

from __future__ import annotations

import getpass
import logging
import re
import socket
import time
from typing import Any

from botocore.exceptions import ClientError

from awops.dynamodb import translated_errors
from awops.dynamodb_restore._aws import epoch_or_none, is_missing, iso
from awops.dynamodb_restore.backup_names import is_awops_backup
from awops.dynamodb_restore.errors import PinRefused
from awops.dynamodb_restore.plan import BACKUP_ARN

logger = logging.getLogger(__name__)

PIN_KEY_PREFIX = "pin#dynamodb-backup#"
_KEY = "lock_key"
_AWOPS_NAME = re.compile(r"awops-(.+)-(\d{8}T\d{6}Z)")


def pin_table_name(config: Any) -> str:
    """Where pins live: ``<[dynamodb] prefix>_<[lock] table>``, the DynamoDB lock table."""
    return f"{config.dynamodb.prefix}_{config.lock.table}"


class BackupPins:
    """The pins kept in ``table``, read and written with ``client`` (DynamoDB's)."""

    def __init__(self, client: Any, table: str, create_table: bool) -> None:
        self.client = client
        self.table = table
        self.create_table = create_table

    def pinned(self) -> dict[str, dict[str, str]]:
        """Backup ARN -> the pin's record; no table yet means no pins. Failures raise
        :class:`~awops.errors.JobError`, so retention never deletes on a guess."""
        pins: dict[str, dict[str, str]] = {}
        request: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(#k, :pin)",
            "ExpressionAttributeNames": {"#k": _KEY},
            "ExpressionAttributeValues": {":pin": {"S": PIN_KEY_PREFIX}},
        }
        with translated_errors(self.client, f"Scan {self.table} (backup pins)"):
            while True:
                try:
                    page = self.client.scan(**request)
                except ClientError as exc:
                    if is_missing(exc):
                        return {}
                    raise
                for item in page.get("Items", []):
                    arn = item[_KEY]["S"].removeprefix(PIN_KEY_PREFIX)
                    pins[arn] = {k: v.get("S", "") for k, v in item.items() if k != _KEY}
                if not page.get("LastEvaluatedKey"):
                    return pins
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def pin(self, backup: dict[str, str]) -> bool:
        """Pin ``backup`` (``arn``, ``name``, ``table``); False when it already was."""
        self._ensure_table()
        item = {
            _KEY: {"S": PIN_KEY_PREFIX + backup["arn"]},
            "backup_name": {"S": backup["name"]},
            "table": {"S": backup["table"]},
            "pinned_at": {"S": iso(time.time())},
            "pinned_by": {"S": _who()},
        }
        with translated_errors(self.client, f"PutItem {self.table} (backup pin)"):
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#k)",
                    ExpressionAttributeNames={"#k": _KEY},
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    return False
                raise
        logger.info("pinned backup %s of %s", backup["name"], backup["table"])
        return True

    def unpin(self, arn: str) -> bool:
        """Remove the pin of ``arn``; False when there was none."""
        with translated_errors(self.client, f"DeleteItem {self.table} (backup pin)"):
            try:
                answer = self.client.delete_item(
                    TableName=self.table,
                    Key={_KEY: {"S": PIN_KEY_PREFIX + arn}},
                    ReturnValues="ALL_OLD",
                )
            except ClientError as exc:
                if is_missing(exc):
                    return False
                raise
        removed = bool(answer.get("Attributes"))
        if removed:
            logger.info("unpinned backup %s", arn)
        return removed

    def _ensure_table(self) -> None:
        with translated_errors(self.client, f"DescribeTable {self.table}"):
            try:
                self.client.describe_table(TableName=self.table)
                return
            except ClientError as exc:
                if not is_missing(exc):
                    raise
        if not self.create_table:
            raise PinRefused(
                f"the table {self.table} that keeps pins does not exist "
                "(create it, or set lock.create_table = true)"
            )
        logger.info("creating %s to keep backup pins", self.table)
        with translated_errors(self.client, f"CreateTable {self.table}"):
            try:
                self.client.create_table(
                    TableName=self.table,
                    AttributeDefinitions=[{"AttributeName": _KEY, "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": _KEY, "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                    raise
            self.client.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()}"


def find_awops_backup(client: Any, prefix: str, backup_id: str) -> dict[str, str]:
    """The awops backup named by ``backup_id`` (its ARN or its name) of a ``<prefix>_*`` table:
    ``{"arn", "name", "table", "status"}``. Refuses anything else with :class:`PinRefused`."""
    arn_match = BACKUP_ARN.fullmatch(backup_id)
    name_match = _AWOPS_NAME.fullmatch(backup_id)
    if arn_match:
        table = arn_match.group(1)
        with translated_errors(client, f"DescribeBackup {backup_id}"):
            try:
                details = client.describe_backup(BackupArn=backup_id)["BackupDescription"][
                    "BackupDetails"
                ]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "BackupNotFoundException":
                    raise PinRefused(f"backup {backup_id} does not exist") from None
                raise
    elif name_match:
        table = name_match.group(1)
        details = _find_by_name(client, table, backup_id)
    else:
        raise PinRefused(
            f"{backup_id!r} is neither a DynamoDB backup ARN nor an awops backup name "
            "(awops-<table>-<YYYYmmddTHHMMSSZ>)"
        )
    if not table.startswith(f"{prefix}_") or not is_awops_backup(table, details):
        raise PinRefused(
            f"backup {details.get('BackupName', backup_id)} is not one of awops' backups of "
            f"{prefix}_* tables; retention never deletes it, so there is nothing to pin"
        )
    return {
        "arn": details["BackupArn"],
        "name": details["BackupName"],
        "table": table,
        "status": str(details.get("BackupStatus", "")),
        "created": iso(epoch_or_none(details.get("BackupCreationDateTime")) or 0.0),
    }


def _find_by_name(client: Any, table: str, name: str) -> dict[str, Any]:
    request: dict[str, Any] = {"TableName": table, "BackupType": "USER"}
    with translated_errors(client, f"ListBackups {table}"):
        while True:
            page = client.list_backups(**request)
            for backup in page.get("BackupSummaries", []):
                if backup.get("BackupName") == name and backup.get("BackupStatus") != "DELETED":
                    return dict(backup)
            if not page.get("LastEvaluatedBackupArn"):
                break
            request["ExclusiveStartBackupArn"] = page["LastEvaluatedBackupArn"]
    raise PinRefused(f"no backup named {name} of table {table}")

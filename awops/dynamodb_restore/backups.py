"""The DynamoDB side of ``awops backups list`` and ``awops backups pin`` / ``unpin``.

Plain functions the ``backups`` group calls; each takes the loaded configuration and, for
tests or a caller that has them, the AWS clients. They raise
:class:`~awops.dynamodb_restore.errors.PinRefused` or :class:`~awops.errors.JobError` for the
command to turn into exit 1.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from awops.aws import AwsClients
from awops.dynamodb_restore.errors import PinRefused
from awops.dynamodb_restore.listing import list_restore_points
from awops.dynamodb_restore.pins import BackupPins, find_awops_backup, pin_table_name
from awops.errors import JobError
from awops.sizes import size_text
from awops.text_table import table

if TYPE_CHECKING:
    from awops.config import Config

logger = logging.getLogger(__name__)

_DYNAMODB_ARN = re.compile(r"arn:aws[a-z-]*:dynamodb:")


def _clients(config: Config, aws: AwsClients | None) -> AwsClients:
    if aws is not None:
        return aws
    return AwsClients(config.dynamodb)


def _pins(config: Config, aws: AwsClients) -> Any:
    return BackupPins(aws.dynamodb(), pin_table_name(config), config.lock.create_table)


def is_dynamodb_backup_id(config: Config, backup_id: str) -> bool:
    """True for a DynamoDB backup ARN or an awops DynamoDB backup name of this deployment."""
    return bool(_DYNAMODB_ARN.match(backup_id)) or backup_id.startswith(
        f"awops-{config.dynamodb.prefix}_"
    )


def list_dynamodb_backups(
    config: Config, aws: AwsClients | None = None, tables: list[str] | None = None
) -> list[dict[str, Any]]:
    """Each expected table's PITR window, then every on-demand backup, newest first.

    A pin table that cannot be read leaves ``pinned`` null (unknown) and logs why.
    """
    aws = _clients(config, aws)
    pinned: set[str] | None
    try:
        pinned = set(_pins(config, aws).pinned())
    except JobError as exc:
        logger.warning("cannot read backup pins, shown as unknown: %s", exc)
        pinned = None
    return list_restore_points(aws.dynamodb(), config.dynamodb, pinned, tables)


def format_dynamodb_backups(entries: list[dict[str, Any]]) -> str:
    """A table for people: each table's restore window, then each backup."""
    rows = []
    for entry in entries:
        if entry["kind"] == "pitr":
            if entry["pitr"] == "ENABLED":
                what = f"{entry['earliest_restorable']} .. {entry['latest_restorable']}"
            else:
                what = f"PITR {entry['pitr']}"
            rows.append([entry["target"], "pitr", what, _size(entry["size_bytes"]), "-", "-"])
            continue
        owner = "awops" if entry["awops"] else entry["type"].lower()
        pinned = {True: "pinned", False: "", None: "?"}[entry["pinned"]]
        rows.append(
            [
                entry["target"],
                f"backup ({owner})",
                f"{entry['created']}  {entry['name']}",
                _size(entry["size_bytes"]),
                entry["status"],
                pinned,
            ]
        )
    if not rows:
        return "no DynamoDB tables or backups found"
    return table(["TABLE", "KIND", "RESTORE POINT", "SIZE", "STATUS", "PIN"], rows)


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "-"
    return size_text(size_bytes)


def pin_dynamodb_backup(
    config: Config, backup_id: str, aws: AwsClients | None = None
) -> dict[str, Any]:
    """Pin awops' backup ``backup_id`` (ARN or name); ``{"id", "name", "table", "changed"}``."""
    aws = _clients(config, aws)
    backup = find_awops_backup(aws.dynamodb(), config.dynamodb.prefix, backup_id)
    changed = _pins(config, aws).pin(backup)
    return {
        "id": backup["arn"],
        "name": backup["name"],
        "table": backup["table"],
        "changed": changed,
    }


def unpin_dynamodb_backup(
    config: Config, backup_id: str, aws: AwsClients | None = None
) -> dict[str, Any]:
    """Unpin ``backup_id``; the pin of a backup deleted by hand since is removed as well."""
    aws = _clients(config, aws)
    pins = _pins(config, aws)
    try:
        backup = find_awops_backup(aws.dynamodb(), config.dynamodb.prefix, backup_id)
    except PinRefused:
        if backup_id in pins.pinned():  # pinned once, the backup itself gone since
            pins.unpin(backup_id)
            return {"id": backup_id, "name": "", "table": "", "changed": True}
        raise
    changed = pins.unpin(backup["arn"])
    return {
        "id": backup["arn"],
        "name": backup["name"],
        "table": backup["table"],
        "changed": changed,
    }

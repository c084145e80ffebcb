"""What awops names its DynamoDB on-demand backups, and how it knows its own among others'.

``dynamodb-backup`` names each backup ``awops-<table>-<UTC timestamp>``; its retention, the
backups listing and ``awops backups pin`` all tell awops' backups by exactly that shape (and
by ``BackupType`` USER), so backups made by people, AWS Backup or other tools are never
touched.
"""

from __future__ import annotations

import re
from typing import Any

_BACKUP_NAME_MAX = 255  # DynamoDB's limit on a backup's name
_STAMP_PATTERN = r"\d{8}T\d{6}Z"


def backup_name(table: str, stamp: str) -> str:
    """``awops-<table>-<stamp>``, the table part shortened to fit DynamoDB's 255 characters."""
    room = _BACKUP_NAME_MAX - len("awops--") - len(stamp)
    return f"awops-{table[:room]}-{stamp}"


def is_awops_backup(table: str, backup: dict[str, Any]) -> bool:
    """Whether ``backup`` (a ListBackups summary) of ``table`` is one dynamodb-backup made."""
    pattern = re.escape(backup_name(table, "X")[:-1]) + _STAMP_PATTERN
    return backup.get("BackupType", "USER") == "USER" and bool(
        re.fullmatch(pattern, backup.get("BackupName", ""))
    )

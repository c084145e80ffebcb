"""The small objects that sit beside a backup: its verify record and its pin marker.

``<id>.verify.json`` is what the last ``pg-backup-verify`` of the backup found, written to
the target it verified: ``{"at": ISO 8601 UTC (the database server's clock), "ok": bool,
"problems": [...], "tables": {"schema.table": {"rows": restored, "expected": manifest}}}``.

``<id>.pin`` pins the backup: retention never deletes it, on the target that holds the marker.
Its content is ``{"pinned_at": ISO 8601 UTC, "reason": "..."}`` (``reason`` optional); its
presence is what pins, so a marker whose content cannot be read still pins.

Both are read like manifests: not trusted, checked field by field, a bad one is a
:class:`RecordError` naming the object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from awops.errors import JobError


class RecordError(JobError):
    """A verify record or pin marker could not be read."""


def iso_z(timestamp: float) -> str:
    """``2026-12-05T03:00:00.000Z``: UTC, milliseconds, as ``backups list`` prints times."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _iso_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return False
        iso_z(moment.timestamp())  # a time listing can print, not only parse
    except (ValueError, OverflowError, OSError):
        return False
    return True


def _document(data: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise RecordError(f"{where} is not JSON") from None
    if not isinstance(document, dict):
        raise RecordError(f"{where}: expected a JSON object")
    return document


@dataclass
class TableCheck:
    """One table of a verify: rows in the restored database and in the manifest."""

    rows: int | None  # None: not restored
    expected: int | None  # None: not in the manifest


@dataclass
class VerifyRecord:
    """What ``pg-backup-verify`` found of one backup."""

    at: str  # ISO 8601, UTC: the database server's clock when the verify ended
    ok: bool
    problems: list[str] = field(default_factory=list)
    tables: dict[str, TableCheck] = field(default_factory=dict)
    restore_seconds: float | None = None

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "at": self.at,
            "ok": self.ok,
            "problems": self.problems,
            "tables": {
                name: {"rows": check.rows, "expected": check.expected}
                for name, check in sorted(self.tables.items())
            },
        }
        if self.restore_seconds is not None:
            document["restore_seconds"] = round(self.restore_seconds, 3)
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> VerifyRecord:
        document = _document(data, where)
        at, ok = document.get("at"), document.get("ok")
        problems, tables = document.get("problems", []), document.get("tables", {})
        if not _iso_time(at):
            raise RecordError(f"{where}: 'at' is not an ISO 8601 time with a UTC offset")
        if not isinstance(ok, bool):
            raise RecordError(f"{where}: 'ok' is not a boolean")
        if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
            raise RecordError(f"{where}: 'problems' is not an array of strings")
        if not isinstance(tables, dict):
            raise RecordError(f"{where}: 'tables' is not an object")
        checks = {}
        for name, entry in tables.items():
            if not isinstance(entry, dict):
                raise RecordError(f"{where}: 'tables' entry {name!r} is not {{rows, expected}}")
            counts = [entry.get("rows"), entry.get("expected")]
            if not all(_count_or_none(count) for count in counts):
                raise RecordError(f"{where}: 'tables' entry {name!r} is not {{rows, expected}}")
            checks[name] = TableCheck(counts[0], counts[1])
        seconds = document.get("restore_seconds")
        if seconds is not None and (
            not isinstance(seconds, int | float) or isinstance(seconds, bool)
        ):
            raise RecordError(f"{where}: 'restore_seconds' is not a number")
        return cls(str(at), ok, list(problems), checks, seconds)

    @property
    def at_timestamp(self) -> float:
        return datetime.fromisoformat(self.at).timestamp()


def _count_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


@dataclass
class PinMarker:
    """Why and since when a backup is pinned."""

    pinned_at: str  # ISO 8601, UTC, the clock of the host that pinned it
    reason: str = ""

    def to_json(self) -> bytes:
        document = {"pinned_at": self.pinned_at}
        if self.reason:
            document["reason"] = self.reason
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> PinMarker:
        document = _document(data, where)
        pinned_at, reason = document.get("pinned_at"), document.get("reason", "")
        if not _iso_time(pinned_at):
            raise RecordError(f"{where}: 'pinned_at' is not an ISO 8601 time with a UTC offset")
        if not isinstance(reason, str):
            raise RecordError(f"{where}: 'reason' is not a string")
        return cls(str(pinned_at), reason)

"""How a backup is named and described.

A backup is two objects side by side: the dump (``<database>-<UTC time>.dump``, ``.dump.age``
when encrypted) and its manifest (``<database>-<UTC time>.manifest.json``). The manifest is
written last; a dump without its manifest is not a backup.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from awops.errors import JobError

MANIFEST_SUFFIX = ".manifest.json"
FORMAT_VERSION = 1
_STAMP = "%Y%m%dT%H%M%S"
_NAME = re.compile(r"^(?P<database>.+)-(?P<stamp>\d{8}T\d{6})\.(?P<millis>\d{3})Z$")


class ManifestError(JobError):
    """A manifest could not be read or does not describe a backup."""


def backup_id(database: str, started: float) -> str:
    """``actingweb-20261201T030000.123Z``: sorts by time, readable, unique per millisecond."""
    moment = datetime.fromtimestamp(started, UTC)
    return f"{database}-{moment.strftime(_STAMP)}.{moment.microsecond // 1000:03d}Z"


def parse_backup_id(name: str) -> tuple[str, float] | None:
    """``(database, start time)`` of a backup id, or None when ``name`` is not one."""
    match = _NAME.match(name)
    if match is None:
        return None
    moment = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    return match["database"], moment.timestamp() + int(match["millis"]) / 1000


DUMP_SUFFIX = ".dump"
ENCRYPTED_DUMP_SUFFIX = ".dump.age"


def dump_name(backup: str, encrypted: bool) -> str:
    return backup + (ENCRYPTED_DUMP_SUFFIX if encrypted else DUMP_SUFFIX)


def backup_of_dump(name: str) -> str | None:
    """The backup id a dump file belongs to, or None when ``name`` is not a dump's."""
    for suffix in (DUMP_SUFFIX, ENCRYPTED_DUMP_SUFFIX):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return None


def manifest_name(backup: str) -> str:
    return backup + MANIFEST_SUFFIX


@dataclass
class Encryption:
    """How the stored dump is encrypted; ``method`` "none" or "age"."""

    method: str = "none"
    recipients: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    backup: str
    database: str
    server_version: str
    pg_dump_version: str
    started_at: str  # ISO 8601, UTC
    finished_at: str
    dump_file: str
    size_bytes: int  # of the stored file, encrypted or not
    sha256: str  # of the stored file
    table_rows: dict[str, int]  # "schema.table" -> rows in the dump's snapshot
    snapshot: str = ""
    encryption: Encryption = field(default_factory=Encryption)
    format: str = "pg_dump custom"
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            document: dict[str, Any] = json.loads(data)
            encryption = Encryption(**document.pop("encryption", {}))
            manifest = cls(**document, encryption=encryption)
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"manifest {where} is unreadable: {exc}") from None
        if manifest.format_version > FORMAT_VERSION:
            raise ManifestError(
                f"manifest {where} has format_version {manifest.format_version}; "
                f"this awops reads up to {FORMAT_VERSION}"
            )
        if not isinstance(manifest.table_rows, dict) or not isinstance(manifest.size_bytes, int):
            raise ManifestError(f"manifest {where}: table_rows or size_bytes malformed")
        return manifest

    @property
    def encrypted(self) -> bool:
        return self.encryption.method != "none"


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")

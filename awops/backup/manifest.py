"""What a backup's manifest says, and reading one back without trusting it.

The manifest is written last; a dump without its manifest is not a backup. A manifest read
from a target is checked field by field before anything uses it: a value of the wrong type is
a :class:`ManifestError` naming the file and the field, never a traceback.

Format 3 added what the backup knows of ActingWeb and of the cluster: ``alembic_revision``
(ActingWeb's ``alembic_version.version_num``, "" when that table is missing),
``actingweb_tables`` (which of ActingWeb's tables exist, as ``"schema.table"`` like the keys
of ``table_rows``), ``actingweb_schema``, ``globals`` (the roles object, :class:`Globals`)
and ``problems`` (what the backup's guards found: a dump under ``min_size_bytes``, a row
count that fell). A manifest of an older format reads with those fields empty, and with
``globals`` skipped as "not recorded"; :attr:`Manifest.records_actingweb` tells the two apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from awops.errors import JobError

# 2 added snapshot_time; a manifest of version 1 is dated by started_at (the host's clock).
# 3 added alembic_revision, actingweb_tables, actingweb_schema, globals and problems.
FORMAT_VERSION = 3
ACTINGWEB_FORMAT_VERSION = 3
ENCRYPTION_METHODS = ("none", "age")
GLOBALS_STATUSES = ("ok", "skipped")
GLOBALS_NOT_RECORDED = "not recorded: a manifest of an older awops"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(JobError):
    """A manifest could not be read or does not describe a backup."""


@dataclass
class Encryption:
    """How the stored dump is encrypted; ``method`` "none" or "age"."""

    method: str = "none"
    recipients: list[str] = field(default_factory=list)


@dataclass
class Globals:
    """The backup's roles object (``pg_dumpall --globals-only --no-role-passwords``).

    ``status`` "ok": ``file`` is ``<id>.globals.sql`` (``.globals.sql.age`` when the backup
    is encrypted) with ``size_bytes`` and ``sha256`` of the stored object. "skipped": the
    server refused or it was turned off, ``reason`` says which; ``file`` and ``sha256`` are
    empty and ``size_bytes`` 0.
    """

    file: str = ""
    size_bytes: int = 0
    sha256: str = ""
    status: str = "skipped"
    reason: str = ""

    @property
    def saved(self) -> bool:
        return self.status == "ok"

    @property
    def encrypted(self) -> bool:
        return self.file.endswith(".age")


@dataclass
class Manifest:
    backup: str
    database: str
    server_version: str
    pg_dump_version: str
    started_at: str  # ISO 8601, UTC, the host's clock
    finished_at: str
    dump_file: str
    size_bytes: int  # of the stored file, encrypted or not
    sha256: str  # of the stored file
    table_rows: dict[str, int]  # "schema.table" -> rows in the dump's snapshot
    snapshot: str = ""
    # ISO 8601, UTC: the database server's clock when the dump's snapshot was taken.
    snapshot_time: str = ""
    encryption: Encryption = field(default_factory=Encryption)
    format: str = "pg_dump custom"
    format_version: int = FORMAT_VERSION
    alembic_revision: str = ""  # ActingWeb's alembic_version.version_num; "" = no such table
    actingweb_tables: list[str] = field(default_factory=list)  # "schema.table", sorted
    actingweb_schema: str = ""  # where ActingWeb's tables were looked for
    globals: Globals = field(default_factory=lambda: Globals(reason=GLOBALS_NOT_RECORDED))
    problems: list[str] = field(default_factory=list)  # what the backup's guards found

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """The manifest in ``data`` (read from ``where``), checked field by field."""
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
            raise ManifestError(f"manifest {where} is not JSON: {reason}") from None
        if not isinstance(document, dict):
            raise ManifestError(
                f"manifest {where}: expected a JSON object, got {_json_type(document)}"
            )
        # The version first: a later format may have other fields, and should say so.
        values: dict[str, Any] = {"format_version": 1}  # read as 1 when absent
        for name, (read, required) in _FIELDS.items():
            if name not in document:
                if required:
                    raise ManifestError(f"manifest {where}: field {name!r} is missing")
                continue
            try:
                values[name] = read(document[name])
            except _FieldError as exc:
                raise ManifestError(
                    f"manifest {where}: field {name!r}: expected {exc}, "
                    f"got {_json_type(document[name])}"
                ) from None
            if name == "format_version" and values[name] > FORMAT_VERSION:
                raise ManifestError(
                    f"manifest {where}: field 'format_version' is {values[name]}; "
                    f"this awops reads up to {FORMAT_VERSION}"
                )
        return cls(**values)

    @property
    def encrypted(self) -> bool:
        return self.encryption.method != "none"

    @property
    def records_actingweb(self) -> bool:
        """True when the manifest says what it found of ActingWeb (format 3 on): an empty
        ``alembic_revision`` then means the table was missing, not that nobody looked."""
        return self.format_version >= ACTINGWEB_FORMAT_VERSION

    @property
    def created(self) -> float:
        """When the backup's data is from: the server's snapshot time, else ``started_at``."""
        return parse_iso_utc(self.snapshot_time or self.started_at)

    @property
    def dated_by(self) -> str:
        """The field :attr:`created` comes from."""
        return "snapshot_time" if self.snapshot_time else "started_at"


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def parse_iso_utc(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time with a UTC offset."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.timestamp()


class _FieldError(Exception):
    """A manifest value is not of its field's kind; the message says what was expected."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return "an array" if isinstance(value, list) else "an object"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _FieldError("a string")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value or "\x00" in value:
        raise _FieldError("a non-empty name without '/'")
    return value


def _time(value: Any) -> str:
    expected = "an ISO 8601 time with a UTC offset"
    if not isinstance(value, str):
        raise _FieldError(expected)
    try:
        # Parsed, and printable again as UTC (a year-1 time east of UTC is not).
        datetime.fromtimestamp(parse_iso_utc(value), UTC)
    except (ValueError, OverflowError, OSError):
        raise _FieldError(expected) from None
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _FieldError("a whole number of at least 0")
    return value


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise _FieldError("64 lower-case hexadecimal digits")
    return value


def _table_rows(value: Any) -> dict[str, int]:
    expected = 'an object of "schema.table": row count (a whole number of at least 0)'
    if not isinstance(value, dict):
        raise _FieldError(expected)
    for table, rows in value.items():
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise _FieldError(f"{expected}; {table!r} is not")
    return dict(value)


def _encryption(value: Any) -> Encryption:
    expected = 'an object {"method": "none" or "age", "recipients": [strings]}'
    if not isinstance(value, dict) or set(value) - {"method", "recipients"}:
        raise _FieldError(expected)
    method = value.get("method", "none")
    recipients = value.get("recipients", [])
    if method not in ENCRYPTION_METHODS or not isinstance(recipients, list):
        raise _FieldError(expected)
    if not all(isinstance(r, str) for r in recipients):
        raise _FieldError(expected)
    return Encryption(method, list(recipients))


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _FieldError("an array of strings")
    return list(value)


def _globals(value: Any) -> Globals:
    expected = (
        'an object {"file", "size_bytes", "sha256", "status": "ok" or "skipped", "reason"}; '
        "with status ok a file name and 64 hexadecimal digits, else neither"
    )
    if not isinstance(value, dict) or set(value) - {
        "file",
        "size_bytes",
        "sha256",
        "status",
        "reason",
    }:
        raise _FieldError(expected)
    entry = Globals(
        file=value.get("file", ""),
        size_bytes=value.get("size_bytes", 0),
        sha256=value.get("sha256", ""),
        status=value.get("status", ""),
        reason=value.get("reason", ""),
    )
    if entry.status not in GLOBALS_STATUSES or not isinstance(entry.reason, str):
        raise _FieldError(expected)
    size = entry.size_bytes
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _FieldError(expected)
    if entry.status == "ok":
        try:
            _name(entry.file)
            _sha256(entry.sha256)
        except _FieldError:
            raise _FieldError(expected) from None
    elif entry.file != "" or entry.sha256 != "" or size != 0:
        raise _FieldError(expected)
    return entry


def _version(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _FieldError("a whole number of at least 1")
    return value


# field -> (reader, required), in the order they are checked; fields that a later awops
# adds without changing the format version are ignored.
_FIELDS: Mapping[str, tuple[Callable[[Any], Any], bool]] = {
    "format_version": (_version, False),
    "backup": (_name, True),
    "database": (_text, True),
    "server_version": (_text, True),
    "pg_dump_version": (_text, True),
    "started_at": (_time, True),
    "finished_at": (_time, True),
    "dump_file": (_name, True),
    "size_bytes": (_count, True),
    "sha256": (_sha256, True),
    "table_rows": (_table_rows, True),
    "snapshot": (_text, False),
    "snapshot_time": (_time, False),
    "encryption": (_encryption, False),
    "format": (_text, False),
    "alembic_revision": (_text, False),
    "actingweb_tables": (_strings, False),
    "actingweb_schema": (_text, False),
    "globals": (_globals, False),
    "problems": (_strings, False),
}

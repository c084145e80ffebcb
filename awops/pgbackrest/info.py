"""``pgbackrest info --output=json`` as typed dataclasses.

Field names follow pgBackRest 2.x's JSON (2.33 and later label each backup and archive with
its ``repo-key``; older output is read as repository 1). Anything awops cannot read is a
:class:`InfoFormatError` naming the field, never a half-read answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from awops.pgbackrest.errors import PgBackRestError

BACKUP_TYPES = ("full", "diff", "incr")
STATUS_OK = 0


class InfoFormatError(PgBackRestError):
    """The JSON is not what ``pgbackrest info --output=json`` prints."""


@dataclass(frozen=True)
class RepoStatus:
    """One repository's status as pgBackRest reports it (code 0 is ok)."""

    key: int
    code: int
    message: str
    cipher: str

    @property
    def ok(self) -> bool:
        return self.code == STATUS_OK


@dataclass(frozen=True)
class Backup:
    """One backup set in one repository; times are Unix seconds, sizes bytes."""

    label: str
    type: str  # full, diff or incr
    repo: int
    db_id: int
    start_timestamp: float
    stop_timestamp: float
    archive_start: str | None
    archive_stop: str | None
    lsn_start: str | None
    lsn_stop: str | None
    size_bytes: int  # the database as of this backup
    delta_bytes: int  # what this backup copied
    repository_size_bytes: int  # this backup set in the repository (references included)
    repository_delta_bytes: int  # what this backup added to the repository
    error: bool  # pgBackRest found page checksum errors while backing up


@dataclass(frozen=True)
class ArchiveRange:
    """The WAL a repository holds for one database id: ``min`` to ``max`` segment names."""

    repo: int
    db_id: int
    archive_id: str  # "<major>-<db id>", the archive's directory name
    min: str | None
    max: str | None


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status_message: str
    backup_lock_held: bool
    repos: tuple[RepoStatus, ...]
    backups: tuple[Backup, ...]
    archives: tuple[ArchiveRange, ...]
    db_versions: dict[int, str]  # db id -> PostgreSQL major version

    @property
    def ok(self) -> bool:
        return self.status_code == STATUS_OK

    def newest(self, repo: int | None = None, backup_type: str | None = None) -> Backup | None:
        """The backup that finished last, in ``repo`` and of ``backup_type`` if given."""
        chosen = [
            b
            for b in self.backups
            if (repo is None or b.repo == repo) and (backup_type is None or b.type == backup_type)
        ]
        return max(chosen, key=lambda b: (b.stop_timestamp, b.label), default=None)

    def archive_for(self, backup: Backup) -> ArchiveRange | None:
        for archive in self.archives:
            if archive.repo == backup.repo and archive.db_id == backup.db_id:
                return archive
        return None


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """The entry for ``stanza`` in pgbackrest's JSON output."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InfoFormatError(f"pgbackrest info printed no JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(document, list):
        raise InfoFormatError("pgbackrest info printed JSON that is not a list of stanzas")
    for entry in document:
        if isinstance(entry, dict) and entry.get("name") == stanza:
            return _stanza(entry)
    raise InfoFormatError(f"pgbackrest info has no entry for stanza {stanza!r}")


def _stanza(entry: dict[str, Any]) -> StanzaInfo:
    status = _field(entry, "status", dict)
    lock = status.get("lock", {}).get("backup", {})
    repos = tuple(
        RepoStatus(
            key=_field(repo, "key", int),
            code=_field(_field(repo, "status", dict), "code", int),
            message=str(repo["status"].get("message", "")),
            cipher=str(repo.get("cipher", "")),
        )
        for repo in entry.get("repo", [])
    )
    return StanzaInfo(
        name=str(entry["name"]),
        status_code=_field(status, "code", int),
        status_message=str(status.get("message", "")),
        backup_lock_held=bool(lock.get("held", False)),
        repos=repos,
        backups=tuple(_backup(item) for item in _field(entry, "backup", list)),
        archives=tuple(_archive(item) for item in _field(entry, "archive", list)),
        db_versions={
            _field(db, "id", int): str(db.get("version", "")) for db in entry.get("db", [])
        },
    )


def _backup(item: dict[str, Any]) -> Backup:
    database = _field(item, "database", dict)
    timestamp = _field(item, "timestamp", dict)
    info = _field(item, "info", dict)
    repository = info.get("repository", {})
    archive = item.get("archive") or {}
    lsn = item.get("lsn") or {}
    backup_type = _field(item, "type", str)
    if backup_type not in BACKUP_TYPES:
        raise InfoFormatError(f"backup type {backup_type!r} is not one of {BACKUP_TYPES}")
    return Backup(
        label=_field(item, "label", str),
        type=backup_type,
        repo=int(database.get("repo-key", 1)),
        db_id=_field(database, "id", int),
        start_timestamp=float(_field(timestamp, "start", int)),
        stop_timestamp=float(_field(timestamp, "stop", int)),
        archive_start=archive.get("start"),
        archive_stop=archive.get("stop"),
        lsn_start=lsn.get("start"),
        lsn_stop=lsn.get("stop"),
        size_bytes=int(info.get("size", 0)),
        delta_bytes=int(info.get("delta", 0)),
        repository_size_bytes=int(repository.get("size", 0)),
        repository_delta_bytes=int(repository.get("delta", 0)),
        error=bool(item.get("error", False)),
    )


def _archive(item: dict[str, Any]) -> ArchiveRange:
    database = _field(item, "database", dict)
    return ArchiveRange(
        repo=int(database.get("repo-key", 1)),
        db_id=_field(database, "id", int),
        archive_id=_field(item, "id", str),
        min=item.get("min"),
        max=item.get("max"),
    )


def _field(container: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = container.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InfoFormatError(
            f"pgbackrest info JSON: {key!r} is {type(value).__name__}, expected {kind.__name__}"
        )
    return value

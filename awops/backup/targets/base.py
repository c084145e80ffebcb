"""What every backup target does: store objects whole or not at all, list complete backups.

A :class:`Writer` either commits a whole object or leaves nothing. Listing returns only
backups whose manifest and dump are both present. Each kind of target lives in a module of
its own (``local``, ``s3``) and is imported only when the configuration names one.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from awops.backup.names import (
    ENCRYPTED_GLOBALS_SUFFIX,
    GLOBALS_SUFFIX,
    MANIFEST_SUFFIX,
    backup_of_dump,
    backup_prefix,
    dump_name,
    globals_name,
    manifest_name,
    parse_backup_id,
    pin_name,
    verify_record_name,
)
from awops.errors import JobError

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
# Leftovers (partial files, multipart uploads) older than this belong to a run that died.
STALE_SECONDS = 24 * 3600
READ_CHUNK_BYTES = 1024 * 1024


class TargetError(JobError):
    """A backup target could not be written, read or listed."""


@dataclass
class StoredBackup:
    """A complete backup on a target: its manifest and its dump are both there.

    ``named_time`` is the time in its name: for ordering listings only; how old a backup is
    comes from its manifest. ``pinned`` and ``verified``: its pin marker, its verify record
    are there too.
    """

    backup: str
    database: str
    named_time: float
    dump_file: str
    manifest_file: str
    pinned: bool = False
    verified: bool = False


class Writer(ABC):
    """One object being written; ``commit()`` makes it visible, ``abort()`` removes all of it."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Make the whole object visible under its name, durably; TargetError if not."""

    @abstractmethod
    def abort(self) -> None:
        """Remove whatever was written, committed or not; never raises."""


class Target(ABC):
    """A place that holds backups: object names are flat, without ``/``.

    Every method raises :class:`TargetError` (or BackendUnavailable) with the target's URL
    when the storage fails; none returns partial data silently.
    """

    url: str  # for metrics labels and messages: no credentials, no query

    @abstractmethod
    def prepare(self, database: str) -> None:
        """Create what is missing and remove leftovers of runs that died."""

    @abstractmethod
    def open_writer(self, name: str) -> Writer: ...

    @abstractmethod
    def write_small(self, name: str, data: bytes) -> None:
        """Write a small object (a manifest) atomically."""

    @abstractmethod
    def read_small(self, name: str) -> bytes: ...

    @abstractmethod
    def read_chunks(self, name: str) -> Iterator[bytes]: ...

    @abstractmethod
    def names(self, prefix: str) -> list[str]:
        """Names of the objects that start with ``prefix``."""

    @abstractmethod
    def object_sizes(self, prefix: str) -> dict[str, int]:
        """Size in bytes of every object whose name starts with ``prefix``."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    def local_path(self, name: str) -> Path | None:
        """A path pg_restore can read directly, when the target is a local directory."""
        return None

    def list_backups(self, database: str) -> list[StoredBackup]:
        """Complete backups of ``database``, in the order of the times in their names."""
        names = set(self.names(backup_prefix(database)))
        found = []
        for name in names:
            if not name.endswith(MANIFEST_SUFFIX):
                continue
            backup = name.removesuffix(MANIFEST_SUFFIX)
            parsed = parse_backup_id(backup)
            if parsed is None or parsed[0] != database:
                continue
            for encrypted in (False, True):
                dump = dump_name(backup, encrypted)
                if dump in names:
                    found.append(
                        StoredBackup(
                            backup,
                            database,
                            parsed[1],
                            dump,
                            name,
                            pinned=pin_name(backup) in names,
                            verified=verify_record_name(backup) in names,
                        )
                    )
                    break
        return sorted(found, key=lambda b: (b.named_time, b.backup))

    def remove_orphaned_dumps(self, database: str, now: float) -> list[str]:
        """Delete dumps (and roles objects) of ``database`` that have no manifest and are
        named more than STALE_SECONDS before ``now`` (the database server's clock, which names
        them): a run that died between committing its dump and writing the manifest left
        them. They never counted as backups (that takes both), so only the space they hold
        goes; a run in progress commits its manifest right after its dump."""
        names = set(self.names(backup_prefix(database)))
        removed = []
        for name in sorted(names):
            backup = backup_of_dump(name)
            for suffix in (GLOBALS_SUFFIX, ENCRYPTED_GLOBALS_SUFFIX):
                if backup is None and name.endswith(suffix):
                    backup = name.removesuffix(suffix)
            parsed = parse_backup_id(backup) if backup is not None else None
            if backup is None or parsed is None or parsed[0] != database:
                continue
            if manifest_name(backup) in names or parsed[1] >= now - STALE_SECONDS:
                continue
            logger.warning("removing %s from %s: a dump without a manifest", name, self.url)
            self.delete(name)
            removed.append(name)
        return removed

    def delete_backup(self, backup: StoredBackup) -> None:
        # The manifest first: from then on it no longer counts as a backup. Deleting an
        # object that is not there is no error (a backup without roles, never verified).
        self.delete(backup.manifest_file)
        self.delete(backup.dump_file)
        for encrypted in (False, True):
            self.delete(globals_name(backup.backup, encrypted))
        self.delete(verify_record_name(backup.backup))

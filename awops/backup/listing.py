"""What ``awops backups list`` / ``pin`` / ``unpin`` see: one source of backups per backend.

A :class:`BackupSource` lists one backend's backups wherever that backend keeps them, and pins
and unpins them. Each backend's source lives in a module of its own, named in
:data:`awops.backup.sources.SOURCES` and imported only when that backend is asked for (as
patroni's DCS backends are); the CLI offers exactly the backends named there. PostgreSQL's is
:mod:`awops.backup.pg_source`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from awops.backup.sources import SOURCES

if TYPE_CHECKING:
    from awops.config import Config
    from awops.context import Resources


@dataclass
class ListedBackup:
    """One backup (or an incomplete one) as ``awops backups list`` shows it.

    ``created`` is the database server's time when the backup's data was taken, ISO 8601 UTC;
    ``dated_by`` the field it comes from (``snapshot_time``, ``started_at`` for an older
    manifest, ``name`` for an incomplete backup). ``kept_by`` lists the retention rules that
    keep it. ``verified`` is ``{"at", "ok"}`` of its last verify, or None.
    """

    id: str
    backend: str
    target: str
    database: str
    created: str
    created_timestamp: float
    dated_by: str
    size_bytes: int | None
    sha256: str = ""
    encrypted: bool = False
    pinned: bool = False
    complete: bool = True
    verified: dict[str, Any] | None = None
    kept_by: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    globals: str = ""  # "ok", "skipped", "" when nothing is known
    # A backend's own fields (DynamoDB's restore windows, backup types), kept in the JSON.
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "id": self.id,
            "backend": self.backend,
            "target": self.target,
            "database": self.database,
            "created": self.created,
            "dated_by": self.dated_by,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "encrypted": self.encrypted,
            "pinned": self.pinned,
            "complete": self.complete,
            "verified": self.verified,
            "kept_by": self.kept_by,
            "globals": self.globals,
            "problems": self.problems,
        } | {key: value for key, value in self.extra.items() if key in _BACKEND_OWNED}


# Fields a backend may state differently from the common reading: DynamoDB's ``pinned`` is
# null when its pins cannot be read, its ``created`` null for a table without a window.
_BACKEND_OWNED = ("pinned", "created")


@dataclass
class Listing:
    """Backups of one or more sources, and the places that could not be read."""

    backups: list[ListedBackup] = field(default_factory=list)
    failed_targets: dict[str, str] = field(default_factory=dict)

    def extend(self, other: Listing) -> None:
        self.backups += other.backups
        self.failed_targets.update(other.failed_targets)

    def newest_first(self) -> list[ListedBackup]:
        return sorted(self.backups, key=lambda b: (-b.created_timestamp, b.id, b.target))


@dataclass
class PinResult:
    """Where a pin or unpin was done, where it was already so, and where it failed."""

    done: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.done or self.already or self.failed)


class BackupSource(ABC):
    """One backend's backups. ``usage_problem`` runs before anything is touched; every other
    method reports a place it cannot read in its result (never raises for it), naming it
    without credentials."""

    backend: ClassVar[str]

    def __init__(self, config: Config, resources: Resources) -> None:
        self.config = config
        self.resources = resources

    @abstractmethod
    def usage_problem(self, target: str | None) -> str | None:
        """Why this source cannot be asked (nothing configured, a bad ``target``), or None."""

    @abstractmethod
    def backup_id_problem(self, backup: str) -> str | None:
        """Why ``backup`` cannot be one of this backend's backup ids, or None."""

    @abstractmethod
    def list_backups(self, target: str | None) -> Listing:
        """Every backup, complete or not, on every place (or only ``target``)."""

    @abstractmethod
    def pin(self, backup: str, target: str | None, reason: str) -> PinResult:
        """Pin ``backup`` wherever it is: retention never deletes it."""

    @abstractmethod
    def unpin(self, backup: str, target: str | None) -> PinResult:
        """Remove the pin of ``backup`` wherever it is."""

    def people_table(self, backups: list[ListedBackup]) -> str | None:
        """This backend's own table for people, or None for the common one."""
        return None


def open_source(backend: str, config: Config, resources: Resources) -> BackupSource:
    """The source of ``backend`` (one of :data:`SOURCES`)."""
    module_name, _, class_name = SOURCES[backend].partition(":")
    source_class = getattr(importlib.import_module(module_name), class_name)
    source: BackupSource = source_class(config, resources)
    return source

"""The backups on a target, dated by the database server's clock, never the host's.

Each complete backup's manifest is read and checked. A backup is as old as its data: the
manifest's ``snapshot_time``, the server's clock when the dump's snapshot was taken. A
manifest written before that field existed is dated by ``started_at`` (the host's clock then)
and the log says so. File names are not trusted for age: an older awops named backups by the
host's clock, and a host clock that was a year fast named them a year ahead.

A backup dated after the server's clock now (beyond :data:`FUTURE_SKEW_SECONDS`) is not
counted as good: were it counted, it would stay the newest for as long as its date is ahead,
and retention and verify would rely on it instead of the backups written since.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from awops.backup.manifest import Manifest, ManifestError, iso_utc
from awops.backup.names import globals_name
from awops.backup.retention import RetentionPolicy, kept_by
from awops.backup.targets import StoredBackup, Target

logger = logging.getLogger(__name__)

# How far a backup's date may run ahead of the server's clock now: clocks of a failover
# pair, or the host's for a manifest dated by started_at, differ by this much at most.
FUTURE_SKEW_SECONDS = 300.0


class ServerClock:
    """The database server's clock, read once and carried forward on ``time.monotonic``."""

    def __init__(self, server_time: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._server_time = server_time
        self._monotonic = monotonic
        self._read_at = monotonic()

    @classmethod
    def read(cls, conn: Any) -> ServerClock:
        """The clock of the server ``conn`` is connected to."""
        row = conn.execute("SELECT statement_timestamp()").fetchone()
        return cls(row[0].timestamp())

    def now(self) -> float:
        return self._server_time + (self._monotonic() - self._read_at)


@dataclass
class DatedBackup:
    """A complete backup with its checked manifest and its date."""

    stored: StoredBackup
    manifest: Manifest

    @property
    def backup(self) -> str:
        return self.stored.backup

    @property
    def created(self) -> float:
        return self.manifest.created

    def describe(self) -> dict[str, Any]:
        return {
            "backup": self.backup,
            "created": iso_utc(self.created),
            "dated_by": self.manifest.dated_by,
        }


@dataclass
class Catalog:
    """What one target holds of one database, sorted by date, oldest first."""

    target: str
    good: list[DatedBackup] = field(default_factory=list)
    future: list[DatedBackup] = field(default_factory=list)  # dated after the server's now
    unreadable: list[str] = field(default_factory=list)  # one message per manifest
    unreadable_stored: list[StoredBackup] = field(default_factory=list)  # in that order

    @property
    def newest(self) -> DatedBackup | None:
        return self.good[-1] if self.good else None

    @property
    def stored_count(self) -> int:
        return len(self.good) + len(self.future) + len(self.unreadable)

    def future_message(self, server_now: float) -> str:
        names = ", ".join(f"{d.backup} ({iso_utc(d.created)})" for d in self.future)
        return (
            f"{self.target} holds {len(self.future)} backup(s) dated after the database "
            f"server's clock ({iso_utc(server_now)}): {names}; never counted as the newest "
            "nor deleted: move them out of the target (runbook: a backup dated in the future)"
        )

    def unreadable_message(self) -> str:
        return f"{len(self.unreadable)} manifest(s) cannot be read: {self.unreadable[0]}"

    def kept_by(
        self, policy: RetentionPolicy, now: float, pinned: set[str] | None = None
    ) -> dict[str, list[str]]:
        """Which retention rules keep each good backup (see :mod:`awops.backup.retention`).

        A backup its guards flagged (``problems`` in its manifest) takes no place among the
        backups the rules keep and is never deleted: ``["flagged"]``, plus ``pinned``.
        ``pinned`` defaults to the backups with a pin marker.
        """
        if pinned is None:
            pinned = {dated.backup for dated in self.good if dated.stored.pinned}
        counted = [(d.backup, d.created) for d in self.good if not d.manifest.problems]
        reasons = kept_by(counted, policy, now, pinned)
        for dated in self.good:
            if dated.manifest.problems:
                reasons[dated.backup] = ["flagged"]
                if dated.backup in pinned:
                    reasons[dated.backup].append("pinned")
        return reasons


def read_catalog(
    target: Target,
    database: str,
    server_now: float,
    future_skew_seconds: float = FUTURE_SKEW_SECONDS,
) -> Catalog:
    """Every complete backup of ``database`` on ``target``, dated and sorted.

    A storage failure raises (TargetError); a manifest that cannot be read or does not
    describe its backup is listed in ``unreadable``, naming the file and the field.
    """
    catalog = Catalog(target.url)
    for stored in target.list_backups(database):
        where = f"{target.url}/{stored.manifest_file}"
        try:
            manifest = Manifest.from_json(target.read_small(stored.manifest_file), where)
            _check_describes(manifest, stored, where)
        except ManifestError as exc:
            logger.warning("%s", exc)
            catalog.unreadable.append(str(exc))
            catalog.unreadable_stored.append(stored)
            continue
        dated = DatedBackup(stored, manifest)
        if manifest.dated_by != "snapshot_time":
            logger.info(
                "%s has no snapshot_time (written by an older awops): dated by started_at, "
                "the host's clock",
                where,
            )
        if dated.created > server_now + future_skew_seconds:
            logger.warning(
                "%s is dated %s, after the database server's clock (%s): not counted",
                where,
                iso_utc(dated.created),
                iso_utc(server_now),
            )
            catalog.future.append(dated)
        else:
            catalog.good.append(dated)
    catalog.good.sort(key=lambda d: (d.created, d.backup))
    catalog.future.sort(key=lambda d: (d.created, d.backup))
    return catalog


def _check_describes(manifest: Manifest, stored: StoredBackup, where: str) -> None:
    for name, says, has in (
        ("backup", manifest.backup, stored.backup),
        ("dump_file", manifest.dump_file, stored.dump_file),
        ("database", manifest.database, stored.database),
    ):
        if says != has:
            raise ManifestError(f"manifest {where}: field {name!r} says {says!r}, not {has!r}")
    expected = globals_name(stored.backup, manifest.encrypted)
    if manifest.globals.saved and manifest.globals.file != expected:
        raise ManifestError(
            f"manifest {where}: field 'globals' names {manifest.globals.file!r}, not {expected!r}"
        )

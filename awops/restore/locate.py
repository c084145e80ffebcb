"""Finding the backup a restore names: ``latest``, or an id, on one target or several.

``latest`` is the newest complete backup by the database server's clock (the manifest's
``snapshot_time``; see :mod:`awops.backup.catalog`) across the targets searched. When a
target cannot be read, or holds a manifest that cannot be read or a backup dated after the
server's clock, which backup is the newest is not known: the restore refuses and says which
target to leave out (``--target``) or to name a backup id. A named id is looked for on each
target in turn; the first that holds it complete is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from awops.backup.catalog import Catalog, DatedBackup, read_catalog
from awops.backup.manifest import Manifest, iso_utc
from awops.backup.names import parse_backup_id
from awops.backup.targets import Target
from awops.errors import JobError
from awops.restore.request import LATEST, RestoreError

logger = logging.getLogger(__name__)


@dataclass
class LocatedBackup:
    """A complete backup, its checked manifest and where it is."""

    target: Target
    dated: DatedBackup

    def raw_manifest(self) -> bytes:
        """The manifest's JSON, read again: for fields the Manifest does not carry."""
        try:
            return self.target.read_small(self.dated.stored.manifest_file)
        except JobError as exc:
            raise RestoreError(f"cannot read the manifest of {self.backup}: {exc}") from None

    @property
    def backup(self) -> str:
        return self.dated.backup

    @property
    def manifest(self) -> Manifest:
        return self.dated.manifest

    @property
    def manifest_where(self) -> str:
        return f"{self.target.url}/{self.dated.stored.manifest_file}"


def locate_backup(
    targets: list[Target], database: str, wanted: str, server_now: float
) -> LocatedBackup:
    """The backup ``wanted`` ("latest" of ``database``, or an id) on ``targets``."""
    if wanted == LATEST:
        return _latest(targets, database, server_now)
    return _by_id(targets, wanted, server_now)


def _read(target: Target, dated: DatedBackup) -> LocatedBackup:
    return LocatedBackup(target, dated)


def _latest(targets: list[Target], database: str, server_now: float) -> LocatedBackup:
    doubts: list[str] = []
    newest: list[tuple[DatedBackup, Target]] = []
    for target in targets:
        try:
            catalog = read_catalog(target, database, server_now)
        except JobError as exc:
            doubts.append(f"{target.url} cannot be read: {exc}")
            continue
        doubts.extend(_doubts(catalog, server_now))
        if catalog.newest is not None:
            newest.append((catalog.newest, target))
    searched = ", ".join(t.url for t in targets)
    if doubts:
        raise RestoreError(
            f"which backup of {database} is the newest is not known: {'; '.join(doubts)}. "
            "Pass --target to search only the others, or name a backup id "
            "(awops backups list)"
        )
    if not newest:
        raise RestoreError(f"no complete backup of {database} on {searched}")
    dated, target = max(newest, key=lambda pair: (pair[0].created, pair[0].backup))
    logger.info(
        "latest backup of %s: %s (%s, by the server's clock) on %s",
        database,
        dated.backup,
        iso_utc(dated.created),
        target.url,
    )
    return _read(target, dated)


def _doubts(catalog: Catalog, server_now: float) -> list[str]:
    doubts = []
    if catalog.unreadable:
        doubts.append(f"{catalog.target}: {catalog.unreadable_message()}")
    if catalog.future:
        doubts.append(catalog.future_message(server_now))
    return doubts


def _by_id(targets: list[Target], backup: str, server_now: float) -> LocatedBackup:
    parsed = parse_backup_id(backup)
    assert parsed is not None, "RestoreRequest.check() accepts only ids that parse"
    database = parsed[0]
    failures: list[str] = []
    for target in targets:
        try:
            catalog = read_catalog(target, database, server_now)
        except JobError as exc:
            failures.append(f"{target.url} cannot be read: {exc}")
            logger.warning("%s cannot be read: %s", target.url, exc)
            continue
        for dated in catalog.good + catalog.future:
            if dated.backup == backup:
                if dated in catalog.future:
                    logger.warning(
                        "%s is dated %s, after the database server's clock; restoring it "
                        "since it was named",
                        backup,
                        iso_utc(dated.created),
                    )
                return _read(target, dated)
        unreadable = [message for message in catalog.unreadable if backup in message]
        if unreadable:
            raise RestoreError(f"backup {backup} on {target.url}: {unreadable[0]}")
    searched = ", ".join(t.url for t in targets)
    message = f"backup {backup} not found on {searched}"
    if failures:
        message += f" ({'; '.join(failures)})"
    raise RestoreError(message)

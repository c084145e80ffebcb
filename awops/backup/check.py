"""``awops backups check``: a backup's integrity without a restore.

For each backup chosen (one id, ``latest`` of the configured database on each target, or all
of them) the dump is read whole: its size and sha256 against the manifest, decrypted with the
age identities when it is encrypted, and ``pg_restore --list`` reads the archive's table of
contents. The roles object, when the backup saved one, is checked the same way. A manifest
that cannot be read is a problem of its own. Every problem is named; nothing is restored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awops.backup.catalog import Catalog, DatedBackup, read_catalog
from awops.backup.fetch import (
    Identities,
    IntegrityProblem,
    check_globals,
    fetch_archive,
    list_archive,
)
from awops.backup.names import backup_of_dump, backup_of_object, parse_backup_id
from awops.backup.pg_source import PgBackupSource
from awops.backup.target_url import display_url
from awops.backup.targets import Target
from awops.errors import JobError
from awops.staging import staging_directory

logger = logging.getLogger(__name__)

LATEST = "latest"
ALL = "all"


@dataclass
class CheckedBackup:
    """One backup's check on one target: ``ok`` when ``problems`` is empty."""

    id: str
    target: str
    problems: list[str] = field(default_factory=list)
    toc_entries: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "ok": self.ok,
            "problems": self.problems,
            "toc_entries": self.toc_entries,
        }


@dataclass
class CheckReport:
    backups: list[CheckedBackup] = field(default_factory=list)
    failed_targets: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.backups) and not self.failed_targets and all(b.ok for b in self.backups)

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "ok": self.ok,
            "backups": [backup.as_json() for backup in self.backups],
        }
        if self.failed_targets:
            document["failed_targets"] = self.failed_targets
        return document


class BackupCheck:
    """Checks backups of ``pg-backup`` on the targets of a :class:`PgBackupSource`."""

    def __init__(
        self,
        source: PgBackupSource,
        identities: Identities,
        pg_restore: str,
        work_dir: str,
        on_cancel: Callable[[Callable[[], None]], None],
    ) -> None:
        self.source = source
        self.identities = identities
        self.pg_restore = pg_restore
        self.work_dir = work_dir
        self.on_cancel = on_cancel

    def run(self, selector: str, target: str | None) -> CheckReport:
        """Check ``selector`` (a backup id, ``latest`` or ``all``) on every target."""
        report = CheckReport()
        urls = self.source.urls(target)
        for url in urls:
            try:
                place = self.source.open(url)
                chosen, broken = self._select(place, selector)
            except JobError as exc:
                logger.error("cannot read %s: %s", display_url(url), exc)
                report.failed_targets[display_url(url)] = str(exc)
                continue
            report.backups += broken
            for dated in chosen:
                report.backups.append(self._check(place, dated))
        if selector not in (ALL, LATEST) and not report.backups and not report.failed_targets:
            where = ", ".join(display_url(url) for url in urls)
            report.backups.append(CheckedBackup(selector, "", [f"no backup {selector} on {where}"]))
        return report

    def _select(
        self, place: Target, selector: str
    ) -> tuple[list[DatedBackup], list[CheckedBackup]]:
        """The backups to check on ``place``, and entries for what is broken beyond checking."""
        now = time.time()
        if selector == LATEST:
            database = self.source.config.postgresql.dbname
            catalog = read_catalog(place, database, now)
            broken = _unreadable(place, catalog)
            if catalog.newest is None:
                broken.append(
                    CheckedBackup(LATEST, place.url, [f"no complete backup of {database}"])
                )
                return [], broken
            return [catalog.newest], broken
        if selector == ALL:
            databases = sorted(
                {
                    parsed[0]
                    for name in place.names("")
                    if (backup := backup_of_object(name)) and (parsed := parse_backup_id(backup))
                }
            )
            chosen: list[DatedBackup] = []
            broken = []
            for database in databases:
                catalog = read_catalog(place, database, now)
                chosen += catalog.good + catalog.future
                broken += _unreadable(place, catalog)
            return sorted(chosen, key=lambda d: (-d.created, d.backup)), broken
        parsed = parse_backup_id(selector)
        assert parsed is not None, "the command checks the id before anything is read"
        catalog = read_catalog(place, parsed[0], now)
        found = [d for d in catalog.good + catalog.future if d.backup == selector]
        broken = [b for b in _unreadable(place, catalog) if b.id == selector]
        dumps = [name for name in place.names(selector) if backup_of_dump(name) == selector]
        if not found and not broken and dumps:
            broken.append(CheckedBackup(selector, place.url, ["no manifest: not a backup"]))
        return found, broken

    def _check(self, place: Target, dated: DatedBackup) -> CheckedBackup:
        stored, manifest = dated.stored, dated.manifest
        checked = CheckedBackup(stored.backup, place.url)
        logger.info("checking %s on %s (%d bytes)", stored.backup, place.url, manifest.size_bytes)
        with staging_directory("awops-check-", self.work_dir) as tmp:
            try:
                archive = fetch_archive(place, stored, manifest, Path(tmp), self.identities)
                checked.toc_entries = list_archive(self.pg_restore, archive, self.on_cancel)
            except (IntegrityProblem, JobError) as exc:
                checked.problems.append(str(exc))
        try:
            check_globals(place, manifest, self.identities)
        except (IntegrityProblem, JobError) as exc:
            checked.problems.append(f"roles: {exc}")
        for problem in checked.problems:
            logger.warning("%s on %s: %s", stored.backup, place.url, problem)
        return checked


def _unreadable(place: Target, catalog: Catalog) -> list[CheckedBackup]:
    return [
        CheckedBackup(stored.backup, place.url, [message])
        for stored, message in zip(catalog.unreadable_stored, catalog.unreadable, strict=True)
    ]

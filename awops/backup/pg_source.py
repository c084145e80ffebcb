"""``pg-backup``'s backups for ``awops backups``: listed, pinned and unpinned on each target.

Every database's backups on a target are listed, not only the configured one's. A complete
backup is dated by its manifest (the database server's clock); ``kept_by`` is what this
configuration's retention (``[jobs.pg-backup]``) keeps, judged by the host's clock, since
listing never needs the database. A dump without its manifest, a manifest without its dump
and a manifest that cannot be read are listed with ``complete`` false and the reason in
``problems``: never as backups.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from awops.backup.catalog import DatedBackup, read_catalog
from awops.backup.listing import BackupSource, ListedBackup, Listing, PinResult
from awops.backup.manifest import Manifest
from awops.backup.names import (
    ENCRYPTED_DUMP_SUFFIX,
    backup_of_dump,
    backup_of_object,
    manifest_name,
    parse_backup_id,
    pin_name,
    verify_record_name,
)
from awops.backup.records import PinMarker, RecordError, VerifyRecord, iso_z
from awops.backup.retention import RetentionPolicy
from awops.backup.target_url import EXPECTED_ONE, display_url, target_url_problem
from awops.backup.targets import StoredBackup, Target, open_target
from awops.errors import JobError

logger = logging.getLogger(__name__)

BACKEND = "postgresql"


class PgBackupSource(BackupSource):
    """The backups ``pg-backup`` wrote to ``[backup] targets`` (or one ``--target``)."""

    backend = BACKEND

    def usage_problem(self, target: str | None) -> str | None:
        if target:
            problem = target_url_problem(target)
            return None if problem is None else f"--target: expected {EXPECTED_ONE} ({problem})"
        if not self.config.backup.targets:
            return "no backup target: set [backup] targets or AWOPS_BACKUP_TARGET, or --target"
        return None

    def backup_id_problem(self, backup: str) -> str | None:
        if parse_backup_id(backup) is None:
            return (
                f"{backup!r} is not a backup id: expected <database>-<YYYYmmddTHHMMSS.mmm>Z, "
                "as awops backups list shows them"
            )
        return None

    def urls(self, target: str | None) -> list[str]:
        return [target] if target else list(self.config.backup.targets)

    def open(self, url: str) -> Target:
        return open_target(url, self.resources.aws, self.config.backup)

    def policy(self) -> RetentionPolicy:
        job = self.config.jobs.get("pg-backup")
        if job is None:
            return RetentionPolicy()
        return RetentionPolicy.of(job.options)

    # --- list ------------------------------------------------------------------------------

    def list_backups(self, target: str | None) -> Listing:
        listing = Listing()
        now = time.time()
        for url in self.urls(target):
            try:
                listing.backups += self._list_target(self.open(url), now)
            except JobError as exc:
                logger.error("cannot list backups on %s: %s", display_url(url), exc)
                listing.failed_targets[display_url(url)] = str(exc)
        return listing

    def _list_target(self, target: Target, now: float) -> list[ListedBackup]:
        sizes = target.object_sizes("")
        objects: dict[str, set[str]] = {}
        for name in sizes:
            backup = backup_of_object(name)
            if backup is not None:
                objects.setdefault(backup, set()).add(name)
        databases = sorted({parsed[0] for b in objects if (parsed := parse_backup_id(b))})
        entries: list[ListedBackup] = []
        for database in databases:
            catalog = read_catalog(target, database, now)
            plan = catalog.kept_by(self.policy(), now)
            for dated in catalog.good:
                entries.append(self._complete(target, dated, plan[dated.backup], sizes))
            for dated in catalog.future:
                entry = self._complete(target, dated, ["future"], sizes)
                entry.problems.append(
                    "dated after this host's clock: retention neither counts nor deletes it"
                )
                entries.append(entry)
            for stored, message in zip(catalog.unreadable_stored, catalog.unreadable, strict=True):
                entries.append(self._incomplete(target, stored.backup, sizes, [message]))
        listed = {entry.id for entry in entries}
        for backup, names in sorted(objects.items()):
            if backup in listed:
                continue
            if manifest_name(backup) in names:
                problem = "its manifest is here, its dump is not: not a backup"
            elif any(backup_of_dump(name) == backup for name in names):
                problem = "no manifest: not a backup (a run that died, or one still writing)"
            else:
                continue  # a pin, verify record or roles object left without its backup
            entries.append(self._incomplete(target, backup, sizes, [problem]))
        return entries

    def _complete(
        self, target: Target, dated: DatedBackup, kept_by: list[str], sizes: dict[str, int]
    ) -> ListedBackup:
        stored, manifest = dated.stored, dated.manifest
        problems = list(manifest.problems)
        stored_size = sizes.get(stored.dump_file)
        if stored_size is not None and stored_size != manifest.size_bytes:
            problems.append(
                f"{stored.dump_file} is {stored_size} bytes, the manifest says "
                f"{manifest.size_bytes}"
            )
        verified = self._verified(target, stored, problems)
        return ListedBackup(
            id=stored.backup,
            backend=BACKEND,
            target=target.url,
            database=stored.database,
            created=iso_z(dated.created),
            created_timestamp=dated.created,
            dated_by=manifest.dated_by,
            size_bytes=manifest.size_bytes,
            sha256=manifest.sha256,
            encrypted=manifest.encrypted,
            pinned=stored.pinned,
            complete=True,
            verified=verified,
            kept_by=kept_by,
            problems=problems,
            globals=_globals_status(manifest),
        )

    @staticmethod
    def _verified(
        target: Target, stored: StoredBackup, problems: list[str]
    ) -> dict[str, Any] | None:
        if not stored.verified:
            return None
        name = verify_record_name(stored.backup)
        try:
            record = VerifyRecord.from_json(target.read_small(name), f"{target.url}/{name}")
        except (RecordError, ValueError) as exc:
            problems.append(f"verify record cannot be read: {exc}")
            return None
        if not record.ok and record.problems:
            problems.append(f"last verify failed: {record.problems[0]}")
        return {"at": iso_z(record.at_timestamp), "ok": record.ok}

    @staticmethod
    def _incomplete(
        target: Target, backup: str, sizes: dict[str, int], problems: list[str]
    ) -> ListedBackup:
        database, named = parse_backup_id(backup) or ("", 0.0)
        encrypted = backup + ENCRYPTED_DUMP_SUFFIX in sizes
        dump = next((n for n in sizes if backup_of_dump(n) == backup), None)
        return ListedBackup(
            id=backup,
            backend=BACKEND,
            target=target.url,
            database=database,
            created=iso_z(named),
            created_timestamp=named,
            dated_by="name",
            size_bytes=sizes.get(dump) if dump is not None else None,
            encrypted=encrypted,
            pinned=pin_name(backup) in sizes,
            complete=False,
            problems=problems,
        )

    # --- pin -------------------------------------------------------------------------------

    def pin(self, backup: str, target: str | None, reason: str) -> PinResult:
        result = PinResult()
        marker = PinMarker(iso_z(time.time()), reason).to_json()
        for url in self.urls(target):
            try:
                place = self.open(url)
                names = set(place.names(backup))
                if manifest_name(backup) not in names:
                    if any(backup_of_dump(name) == backup for name in names):
                        result.failed[place.url] = "no manifest: not a backup, not pinned"
                    continue
                if pin_name(backup) in names:
                    result.already.append(place.url)
                    continue
                place.write_small(pin_name(backup), marker)
                logger.info("pinned %s on %s", backup, place.url)
                result.done.append(place.url)
            except JobError as exc:
                result.failed[display_url(url)] = str(exc)
        return result

    def unpin(self, backup: str, target: str | None) -> PinResult:
        result = PinResult()
        for url in self.urls(target):
            try:
                place = self.open(url)
                names = set(place.names(backup))
                if pin_name(backup) in names:
                    place.delete(pin_name(backup))
                    logger.info("unpinned %s on %s", backup, place.url)
                    result.done.append(place.url)
                elif manifest_name(backup) in names:
                    result.already.append(place.url)
            except JobError as exc:
                result.failed[display_url(url)] = str(exc)
        return result


def _globals_status(manifest: Manifest) -> str:
    return manifest.globals.status if manifest.records_actingweb else ""

"""Guards against the "successful" backup of nothing: an empty or wrong database dumps fine.

A dump under ``min_size_bytes``, or whose total row count fell by more than
``max_row_drop_ratio`` against the previous good backup (the newest complete backup before
it whose manifest reads), is kept but reported as a ``problem`` that says why, and the
manifest records it in ``problems``. Such a flagged backup takes no place among the backups
retention keeps, so a week of empty dumps never pushes the real backups out.
"""

from __future__ import annotations

import logging

from awops.backup.catalog import DatedBackup, read_catalog
from awops.backup.manifest import Manifest
from awops.backup.targets import Target
from awops.errors import JobError

logger = logging.getLogger(__name__)


def previous_good(targets: list[Target], manifest: Manifest, now: float) -> DatedBackup | None:
    """The newest good backup of ``manifest``'s database other than ``manifest``'s own, on
    any of ``targets`` (before its manifest is written there); a target that cannot be read
    is left out (retention reads it again and reports it)."""
    good: list[DatedBackup] = []
    for target in targets:
        try:
            good += read_catalog(target, manifest.database, now).good
        except JobError as exc:
            logger.warning("cannot read %s for the row-drop guard: %s", target.url, exc)
    others = [dated for dated in good if dated.backup != manifest.backup]
    return max(others, key=lambda d: (d.created, d.backup), default=None)


def guard_problems(
    manifest: Manifest,
    previous: DatedBackup | None,
    min_size_bytes: int,
    max_row_drop_ratio: float,
) -> list[str]:
    """What the guards find of ``manifest`` (the backup just taken); [] when it passes."""
    problems = []
    if min_size_bytes > 0 and manifest.size_bytes < min_size_bytes:
        problems.append(
            f"the dump is {manifest.size_bytes} bytes, under min_size_bytes "
            f"({min_size_bytes}): an empty or wrong database?"
        )
    if previous is not None and max_row_drop_ratio < 1:
        rows = sum(manifest.table_rows.values())
        before = sum(previous.manifest.table_rows.values())
        if before > 0 and (before - rows) / before > max_row_drop_ratio:
            problems.append(
                f"total rows fell from {before} to {rows} ({(before - rows) / before:.0%}) "
                f"since backup {previous.backup}, more than max_row_drop_ratio "
                f"({max_row_drop_ratio:g}): the right database?"
            )
    for problem in problems:
        logger.warning("backup %s: %s", manifest.backup, problem)
    return problems

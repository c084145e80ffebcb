"""Getting a backup's objects to where pg_restore can read them, checked on the way.

An object is read once: hashed with sha256 as it arrives, decrypted (age) as a stream when it
is encrypted, and written to the work directory, after checking that the directory has room
for it. A local unencrypted dump is only hashed and then read in place. Memory stays at one
read buffer whatever the size of the backup. Nothing reaches the target database before the
size and sha256 match the manifest.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from awops.backup.fetch import HashedChunks, copy_checked, create_private
from awops.backup.targets import Target
from awops.restore.request import RestoreError
from awops.restore.stopping import StopRequest

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
# Room kept free beyond the object itself: the filesystem's own needs, the restore's logs.
FREE_SPACE_MARGIN_BYTES = 64 * MIB


@dataclass(frozen=True)
class StoredObject:
    """One object of a backup and what its manifest promises about it."""

    name: str
    size_bytes: int
    sha256: str
    encrypted: bool


@dataclass(frozen=True)
class FetchedObject:
    """A checked object: ``path`` is readable by pg_restore; ``staged`` when it is a copy in
    the work directory (removed with it), not the target's own file."""

    path: Path
    staged: bool
    seconds: float


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def check_free_space(
    directory: Path, needed_bytes: int, free: Callable[[Path], int] = free_bytes
) -> None:
    """Raise :class:`RestoreError` unless ``directory`` has room for ``needed_bytes``."""
    available = free(directory)
    if available < needed_bytes + FREE_SPACE_MARGIN_BYTES:
        raise RestoreError(
            f"work directory {directory} has {available / MIB:.0f} MiB free; the backup needs "
            f"{needed_bytes / MIB:.0f} MiB plus {FREE_SPACE_MARGIN_BYTES / MIB:.0f} MiB to "
            "spare: free space or pass --work-dir (or set [jobs.pg-backup-verify] work_dir)"
        )


class Fetcher:
    """Reads objects from one target into a work directory, logging bytes as they arrive."""

    def __init__(
        self,
        target: Target,
        staging: Path,
        stop: StopRequest,
        identities: Callable[[], list[bytes]],
        progress_interval_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.staging = staging
        self.stop = stop
        self._identities = identities
        self.progress_interval_seconds = progress_interval_seconds
        self._monotonic = monotonic

    def in_place(self, stored: StoredObject) -> Path | None:
        """Where pg_restore can read ``stored`` as it is (a local unencrypted object), else
        None: it is staged in the work directory."""
        return None if stored.encrypted else self.target.local_path(stored.name)

    def fetch(self, stored: StoredObject, what: str) -> FetchedObject:
        """``stored`` checked against its size and sha256 (decrypted when it is encrypted)."""
        started = self._monotonic()
        local = self.in_place(stored)
        if local is not None:
            chunks = self._hashed(stored, what)
            try:
                self._check(stored, chunks, sink=None)
            finally:
                chunks.close()
            return FetchedObject(local, staged=False, seconds=self._monotonic() - started)
        path = self.staging / (stored.name.removesuffix(".age") + ".restore")
        identities = self._identities() if stored.encrypted else None
        out = create_private(path)
        chunks = self._hashed(stored, what)
        try:
            with out:
                self._check(stored, chunks, sink=out, identities=identities)
        finally:
            chunks.close()
        return FetchedObject(path, staged=True, seconds=self._monotonic() - started)

    def _check(
        self,
        stored: StoredObject,
        chunks: HashedChunks,
        sink: IO[bytes] | None,
        identities: list[bytes] | None = None,
    ) -> None:
        decrypt_error = copy_checked(chunks, identities, sink)
        where = f"{self.target.url}/{stored.name}"
        if chunks.size_bytes != stored.size_bytes:
            raise RestoreError(
                f"{where} is {chunks.size_bytes} bytes, the manifest says {stored.size_bytes}: "
                "nothing restored"
            )
        if chunks.hexdigest() != stored.sha256:
            raise RestoreError(
                f"{where}: sha256 {chunks.hexdigest()} does not match the manifest's "
                f"{stored.sha256}: the object was damaged after it was written; nothing restored"
            )
        if decrypt_error:
            raise RestoreError(f"{where}: cannot decrypt: {decrypt_error}; nothing restored")

    def _hashed(self, stored: StoredObject, what: str) -> HashedChunks:
        return HashedChunks.of(
            self.target,
            stored.name,
            self.stop.check,
            _ByteProgress(what, stored.size_bytes, self.progress_interval_seconds, self._monotonic),
        )


class _ByteProgress:
    """Logs bytes read at most once per interval, and once at the end."""

    def __init__(
        self, what: str, total_bytes: int, interval: float, monotonic: Callable[[], float]
    ):
        self.what = what
        self.total_bytes = total_bytes
        self.interval = interval
        self._monotonic = monotonic
        self._started = monotonic()
        self._last = self._started
        self._finished = False

    def update(self, size_bytes: int) -> None:
        now = self._monotonic()
        if now - self._last >= self.interval:
            self._last = now
            share = 100.0 * size_bytes / self.total_bytes if self.total_bytes else 100.0
            logger.info(
                "fetching %s: %.1f of %.1f MiB (%.0f%%)",
                self.what,
                size_bytes / MIB,
                self.total_bytes / MIB,
                share,
            )

    def done(self, size_bytes: int) -> None:
        if self._finished:
            return
        self._finished = True
        seconds = max(self._monotonic() - self._started, 1e-6)
        logger.info(
            "fetched %s: %.1f MiB in %.1f s (%.1f MiB/s)",
            self.what,
            size_bytes / MIB,
            seconds,
            size_bytes / MIB / seconds,
        )

"""A backup target in a local directory (or a mounted volume).

Files are written as ``*.partial``, fsynced, renamed into place and the directory fsynced, so
a crash leaves either the whole file or a ``*.partial`` that a later run removes. The
directory is created 0700 and every file 0600.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from awops.backup.names import backup_prefix
from awops.backup.targets.base import (
    PARTIAL_SUFFIX,
    READ_CHUNK_BYTES,
    STALE_SECONDS,
    Target,
    TargetError,
    Writer,
)

logger = logging.getLogger(__name__)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter(Writer):
    def __init__(self, final: Path) -> None:
        self.final = final
        self.partial = final.with_name(final.name + PARTIAL_SUFFIX)
        self._committed = False
        try:
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise TargetError(f"{self.partial}: {exc.strerror or exc}") from None
        self._file: Any = os.fdopen(fd, "wb", buffering=0)

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise TargetError(f"{self.partial}: {exc.strerror or exc}") from None

    def commit(self) -> None:
        try:
            os.fsync(self._file.fileno())
            self._file.close()
            os.rename(self.partial, self.final)
            _fsync_directory(self.final.parent)
        except OSError as exc:
            raise TargetError(f"{self.final}: {exc.strerror or exc}") from None
        self._committed = True

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        for path in (self.partial, self.final) if self._committed else (self.partial,):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class LocalTarget(Target):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = "file://" + str(directory)

    def _path(self, name: str) -> Path:
        # Names come from awops (encoded, see awops.backup.names) or from listing this
        # directory; one with a "/" would leave it.
        if "/" in name or name in ("", ".", ".."):
            raise TargetError(f"{self.url}: {name!r} is not a file name of this directory")
        return self.directory / name

    def prepare(self, database: str) -> None:
        prefix = backup_prefix(database)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            stale_before = time.time() - STALE_SECONDS
            for entry in self.directory.iterdir():
                name = entry.name
                ours = name.startswith(prefix) and name.endswith(PARTIAL_SUFFIX)
                if ours and entry.stat().st_mtime < stale_before:
                    logger.warning("removing %s, left by a backup that did not finish", entry)
                    entry.unlink()
        except OSError as exc:
            raise TargetError(f"{self.url}: {exc.strerror or exc}") from None

    def open_writer(self, name: str) -> Writer:
        return LocalWriter(self._path(name))

    def write_small(self, name: str, data: bytes) -> None:
        writer = LocalWriter(self._path(name))
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def read_small(self, name: str) -> bytes:
        path = self._path(name)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TargetError(f"{path}: {exc.strerror or exc}") from None

    def read_chunks(self, name: str) -> Iterator[bytes]:
        path = self._path(name)
        try:
            with path.open("rb", buffering=0) as handle:
                while chunk := handle.read(READ_CHUNK_BYTES):
                    yield chunk
        except OSError as exc:
            raise TargetError(f"{path}: {exc.strerror or exc}") from None

    def names(self, prefix: str) -> list[str]:
        try:
            return [n for n in os.listdir(self.directory) if n.startswith(prefix)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TargetError(f"{self.url}: {exc.strerror or exc}") from None

    def object_sizes(self, prefix: str) -> dict[str, int]:
        sizes = {}
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                        sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TargetError(f"{self.url}: {exc.strerror or exc}") from None
        return sizes

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise TargetError(f"{path}: {exc.strerror or exc}") from None

    def local_path(self, name: str) -> Path | None:
        return self._path(name)

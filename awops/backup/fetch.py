"""Reading a backup's objects back and proving they are what the manifest promises.

Shared by ``pg-backup-verify`` and ``awops backups check``: an object is read once, hashed
with sha256 as it arrives, decrypted (age) as a stream when it is encrypted, and written where
pg_restore can read it; a local unencrypted dump is only hashed and then read in place. A
size, sha256 or decryption failure is an :class:`IntegrityProblem` that says which; a damaged
file is the likelier cause of a decryption failure, so the hash is finished first and a
mismatch named before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Protocol

from awops.backup.dump import DumpError, client_environment, resolve_program, run_client
from awops.backup.encryption import AgeError, decrypt_stream, read_identities
from awops.backup.manifest import Manifest
from awops.backup.targets import StoredBackup, Target
from awops.errors import JobError

Identities = Callable[[], list[bytes]]
# Chunks read (and hashed) ahead from a remote target, 1 MiB each from S3: memory stays a
# few MiB.
READ_AHEAD_CHUNKS = 2
_END = object()


class IntegrityProblem(Exception):
    """A backup's object is not what its manifest promises; the message says how."""


def identities_from(identity_file: str, hint: str) -> Identities:
    """A loader of the age identities in ``identity_file``; without one, a JobError that
    says where to set it (``hint``)."""

    def load() -> list[bytes]:
        if not identity_file:
            raise JobError(f"the backup is age-encrypted: {hint}")
        return read_identities(Path(identity_file))

    return load


class ReadProgress(Protocol):
    """Hears how many bytes of an object have been read: after each chunk, and at the end."""

    def update(self, size_bytes: int) -> None: ...

    def done(self, size_bytes: int) -> None: ...


def _keep_going() -> None:
    return None


class HashedChunks:
    """An object's chunks, hashed with sha256 and counted as they pass.

    ``raise_if_stopping`` is called as each chunk arrives, so a stop request ends a long
    read; ``progress``, when given, hears the bytes read so far. With ``read_ahead``, a
    thread of its own reads and hashes up to that many chunks ahead of the consumer (over the
    network, so that the download and the hash overlap the decryption and the write). The
    chunks are one stream: iterating again goes on where the last iteration stopped."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        raise_if_stopping: Callable[[], None] = _keep_going,
        progress: ReadProgress | None = None,
        read_ahead: int = 0,
    ) -> None:
        self._chunks = chunks
        self._raise_if_stopping = raise_if_stopping
        self._progress = progress
        self._digest = hashlib.sha256()
        self.size_bytes = 0
        self._stream: Iterator[bytes] = self._hashed()
        self._reader = Prefetched(self._stream, read_ahead) if read_ahead else None

    @classmethod
    def of(
        cls,
        target: Target,
        name: str,
        raise_if_stopping: Callable[[], None] = _keep_going,
        progress: ReadProgress | None = None,
    ) -> HashedChunks:
        """The chunks of object ``name`` on ``target``; over the network (no local path), the
        next ones are read and hashed while the consumer decrypts and writes this one."""
        remote = target.local_path(name) is None
        return cls(
            target.read_chunks(name),
            raise_if_stopping,
            progress,
            read_ahead=READ_AHEAD_CHUNKS if remote else 0,
        )

    def __iter__(self) -> Iterator[bytes]:
        return self._reader if self._reader is not None else self._stream

    def _hashed(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._raise_if_stopping()
            self._digest.update(chunk)
            self.size_bytes += len(chunk)
            if self._progress is not None:
                self._progress.update(self.size_bytes)
            yield chunk
        if self._progress is not None:
            self._progress.done(self.size_bytes)

    def close(self) -> None:
        """Release the reader (an S3 response body) when reading stopped early."""
        if self._reader is not None:
            self._reader.close()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def drain(self) -> None:
        for _ in self:
            pass

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class Prefetched:
    """``chunks`` read by a thread of their own, at most ``depth`` ahead of the reader.

    The source is read and closed in that thread only (a generator cannot be closed from
    another thread while it runs); :meth:`close` stops it and waits for it.
    """

    def __init__(self, chunks: Iterator[bytes], depth: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._pump, args=(chunks,), name="awops-fetch", daemon=True
        )
        self._thread.start()

    def _pump(self, chunks: Iterator[bytes]) -> None:
        last: object = _END
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    break
        except BaseException as exc:  # handed to the reader, raised there
            last = exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self._put(last)

    def _put(self, item: object) -> bool:
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        item = self._queue.get()
        if item is _END or isinstance(item, BaseException):
            self._queue.put(item)  # the last item: a reader that asks again gets it again
            if item is _END:
                raise StopIteration
            raise item  # type: ignore[misc]
        assert isinstance(item, bytes)
        return item

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()


def copy_checked(
    chunks: HashedChunks, identities: list[bytes] | None, sink: IO[bytes] | None
) -> str:
    """Pass ``chunks`` to ``sink`` (when given), decrypted with ``identities`` unless None.

    Returns why decryption failed, or "". After a decryption failure the rest is still read,
    so the caller can compare size and sha256 first: a damaged file is the likelier cause."""
    plain: Iterable[bytes] = chunks if identities is None else decrypt_stream(chunks, identities)
    try:
        for piece in plain:
            if sink is not None:
                sink.write(piece)
    except AgeError as exc:
        chunks.drain()
        return str(exc)
    return ""


def create_private(path: Path) -> IO[bytes]:
    """``path``, new, open for writing, readable by its owner only (0600 whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away from 0600 too
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def fetch_object(
    target: Target,
    name: str,
    size_bytes: int,
    sha256: str,
    identities: list[bytes] | None,
    out: Path | None,
    raise_if_stopping: Callable[[], None] = _keep_going,
) -> None:
    """Read ``name`` from ``target``, check its size and sha256, decrypt it with
    ``identities`` (None: it is not encrypted), write the plain bytes to ``out`` if given
    (created 0600).

    ``raise_if_stopping`` is called between chunks, so a stop request ends a long read."""
    chunks = HashedChunks.of(target, name, raise_if_stopping)
    try:
        if out is None:
            decrypt_error = copy_checked(chunks, identities, None)
        else:
            with create_private(out) as handle:
                decrypt_error = copy_checked(chunks, identities, handle)
    finally:
        chunks.close()
    if chunks.size_bytes != size_bytes:
        raise IntegrityProblem(
            f"{name}: size mismatch: read {chunks.size_bytes} bytes, the manifest says {size_bytes}"
        )
    if chunks.hexdigest() != sha256:
        raise IntegrityProblem(
            f"{name}: sha256 mismatch: read {chunks.hexdigest()}, the manifest says {sha256}"
        )
    if decrypt_error:
        raise IntegrityProblem(f"{name}: cannot decrypt: {decrypt_error}")


def fetch_archive(
    target: Target,
    stored: StoredBackup,
    manifest: Manifest,
    staging: Path,
    identities: Identities,
    raise_if_stopping: Callable[[], None] = _keep_going,
) -> Path:
    """A plain pg_dump archive pg_restore can read, after checking size and sha256."""
    local = target.local_path(stored.dump_file)
    size, sha256 = manifest.size_bytes, manifest.sha256
    if not manifest.encrypted and local is not None:
        fetch_object(target, stored.dump_file, size, sha256, None, None, raise_if_stopping)
        return local
    archive = staging / "backup.dump"
    keys = identities() if manifest.encrypted else None
    fetch_object(target, stored.dump_file, size, sha256, keys, archive, raise_if_stopping)
    return archive


def check_globals(target: Target, manifest: Manifest, identities: Identities) -> None:
    """Check the roles object (size, sha256, decryption) when the backup saved one."""
    roles = manifest.globals
    if not roles.saved:
        return
    keys = identities() if roles.encrypted else None
    fetch_object(target, roles.file, roles.size_bytes, roles.sha256, keys, None)


def list_archive(
    pg_restore: str,
    archive: Path,
    on_cancel: Callable[[Callable[[], None]], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """How many entries ``pg_restore --list`` reads from the archive's table of contents."""
    program = resolve_program(pg_restore)
    try:
        listing = run_client(
            [program, "--list", str(archive)],
            client_environment({}),
            on_cancel,
            "pg_restore --list",
            should_stop=should_stop,
        )
    except DumpError as exc:
        raise IntegrityProblem(str(exc)) from None
    return sum(1 for line in listing.splitlines() if line and not line.startswith(";"))

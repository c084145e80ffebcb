"""Reading a backup's objects back and proving they are what the manifest promises.

Shared by ``pg-backup-verify`` and ``awops backups check``: an object is read once, hashed
with sha256 as it arrives, decrypted (age) as a stream when it is encrypted, and written where
pg_restore can read it; a local unencrypted dump is only hashed and then read in place. A
size, sha256 or decryption failure is an :class:`IntegrityProblem` that says which; a damaged
file is the likelier cause of a decryption failure, so the hash is finished first and a
mismatch named before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from awops.backup.dump import DumpError, client_environment, resolve_program, run_client
from awops.backup.encryption import AgeError, decrypt_stream, read_identities
from awops.backup.manifest import Manifest
from awops.backup.targets import StoredBackup, Target
from awops.errors import JobError

Identities = Callable[[], list[bytes]]


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


def fetch_object(
    target: Target,
    name: str,
    size_bytes: int,
    sha256: str,
    identities: list[bytes] | None,
    out: Path | None,
    raise_if_stopping: Callable[[], None] = lambda: None,
) -> None:
    """Read ``name`` from ``target``, check its size and sha256, decrypt it with
    ``identities`` (None: it is not encrypted), write the plain bytes to ``out`` if given.

    ``raise_if_stopping`` is called between chunks, so a stop request ends a long read."""
    digest = hashlib.sha256()
    size = 0

    def hashed() -> Iterator[bytes]:
        nonlocal size
        for chunk in target.read_chunks(name):
            raise_if_stopping()
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    chunks = hashed()
    plain: Iterator[bytes] = chunks if identities is None else decrypt_stream(chunks, identities)
    decrypt_error = ""
    handle = out.open("wb") if out is not None else None
    try:
        for piece in plain:
            if handle is not None:
                handle.write(piece)
    except AgeError as exc:
        decrypt_error = str(exc)
        for _ in chunks:  # finish the hash: a damaged file is the likelier cause
            pass
    finally:
        if handle is not None:
            handle.close()
    if size != size_bytes:
        raise IntegrityProblem(
            f"{name}: size mismatch: read {size} bytes, the manifest says {size_bytes}"
        )
    if digest.hexdigest() != sha256:
        raise IntegrityProblem(
            f"{name}: sha256 mismatch: read {digest.hexdigest()}, the manifest says {sha256}"
        )
    if decrypt_error:
        raise IntegrityProblem(f"{name}: cannot decrypt: {decrypt_error}")


def fetch_archive(
    target: Target,
    stored: StoredBackup,
    manifest: Manifest,
    staging: Path,
    identities: Identities,
    raise_if_stopping: Callable[[], None] = lambda: None,
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

"""Where backups live: a local directory or an S3 prefix, behind one small interface.

A :class:`Writer` either commits a whole object or leaves nothing: local files are written as
``*.partial``, fsynced and renamed; S3 objects are multipart uploads that are completed or
aborted. Listing returns only backups whose manifest and dump are both present.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from awops.backup.manifest import (
    MANIFEST_SUFFIX,
    backup_of_dump,
    dump_name,
    manifest_name,
    parse_backup_id,
)
from awops.errors import BackendUnavailable, JobError

if TYPE_CHECKING:
    from awops.aws import AwsClients
    from awops.config import BackupSettings

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
# Leftovers (partial files, multipart uploads) older than this belong to a run that died.
STALE_SECONDS = 24 * 3600
READ_CHUNK_BYTES = 1024 * 1024


class TargetError(JobError):
    """A backup target could not be written, read or listed."""


@dataclass
class StoredBackup:
    """A complete backup on a target: its manifest and its dump are both there."""

    backup: str
    database: str
    started: float
    dump_file: str
    manifest_file: str


class Writer(ABC):
    """One object being written; ``commit()`` makes it visible, ``abort()`` removes all of it."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None:
        """Remove whatever was written, committed or not; never raises."""


class Target(ABC):
    url: str  # for metrics labels and messages: no credentials, no query

    @abstractmethod
    def prepare(self, database: str) -> None:
        """Create what is missing and remove leftovers of runs that died."""

    @abstractmethod
    def open_writer(self, name: str) -> Writer: ...

    @abstractmethod
    def write_small(self, name: str, data: bytes) -> None:
        """Write a small object (a manifest) atomically."""

    @abstractmethod
    def read_small(self, name: str) -> bytes: ...

    @abstractmethod
    def read_chunks(self, name: str) -> Iterator[bytes]: ...

    @abstractmethod
    def names(self, database: str) -> list[str]:
        """Object names that start with ``<database>-``."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    def local_path(self, name: str) -> Path | None:
        """A path pg_restore can read directly, when the target is a local directory."""
        return None

    def list_backups(self, database: str) -> list[StoredBackup]:
        """Complete backups of ``database``, oldest first."""
        names = set(self.names(database))
        found = []
        for name in names:
            if not name.endswith(MANIFEST_SUFFIX):
                continue
            backup = name.removesuffix(MANIFEST_SUFFIX)
            parsed = parse_backup_id(backup)
            if parsed is None or parsed[0] != database:
                continue
            for encrypted in (False, True):
                dump = dump_name(backup, encrypted)
                if dump in names:
                    found.append(StoredBackup(backup, database, parsed[1], dump, name))
                    break
        return sorted(found, key=lambda b: (b.started, b.backup))

    def remove_orphaned_dumps(self, database: str, now: float) -> list[str]:
        """Delete dumps of ``database`` that have no manifest and started more than
        STALE_SECONDS ago: a run that died between committing its dump and writing the
        manifest left them. They never counted as backups (that takes both), so only the space
        they hold goes; a run in progress commits its manifest right after its dump."""
        names = set(self.names(database))
        removed = []
        for name in sorted(names):
            backup = backup_of_dump(name)
            parsed = parse_backup_id(backup) if backup is not None else None
            if backup is None or parsed is None or parsed[0] != database:
                continue
            if manifest_name(backup) in names or parsed[1] >= now - STALE_SECONDS:
                continue
            logger.warning("removing %s from %s: a dump without a manifest", name, self.url)
            self.delete(name)
            removed.append(name)
        return removed

    def delete_backup(self, backup: StoredBackup) -> None:
        # The manifest first: from then on it no longer counts as a backup.
        self.delete(backup.manifest_file)
        self.delete(backup.dump_file)


def display_url(target: str) -> str:
    """The target without user, password or query, as it appears in labels and messages."""
    parts = urlsplit(target)
    if not parts.scheme:
        return "file://" + target
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


@dataclass
class S3Options:
    endpoint_url: str = ""
    part_size_bytes: int = 8 * 1024 * 1024
    sse: str = ""
    sse_kms_key_id: str = ""
    storage_class: str = ""
    abort_retry_seconds: float = 60.0


def open_target(target: str, aws: AwsClients | None, s3: S3Options) -> Target:
    parts = urlsplit(target)
    if parts.scheme == "s3":
        if aws is None:
            raise TargetError(f"{display_url(target)}: S3 targets need AWS clients")
        return S3Target(parts.netloc.rpartition("@")[2], parts.path.strip("/"), aws, s3)
    return LocalTarget(Path(parts.path if parts.scheme else target))


# --- local directory ------------------------------------------------------------------------


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

    def prepare(self, database: str) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            stale_before = time.time() - STALE_SECONDS
            for entry in self.directory.iterdir():
                name = entry.name
                ours = name.startswith(database + "-") and name.endswith(PARTIAL_SUFFIX)
                if ours and entry.stat().st_mtime < stale_before:
                    logger.warning("removing %s, left by a backup that did not finish", entry)
                    entry.unlink()
        except OSError as exc:
            raise TargetError(f"{self.url}: {exc.strerror or exc}") from None

    def open_writer(self, name: str) -> Writer:
        return LocalWriter(self.directory / name)

    def write_small(self, name: str, data: bytes) -> None:
        writer = LocalWriter(self.directory / name)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def read_small(self, name: str) -> bytes:
        try:
            return (self.directory / name).read_bytes()
        except OSError as exc:
            raise TargetError(f"{self.directory / name}: {exc.strerror or exc}") from None

    def read_chunks(self, name: str) -> Iterator[bytes]:
        try:
            with (self.directory / name).open("rb", buffering=0) as handle:
                while chunk := handle.read(READ_CHUNK_BYTES):
                    yield chunk
        except OSError as exc:
            raise TargetError(f"{self.directory / name}: {exc.strerror or exc}") from None

    def names(self, database: str) -> list[str]:
        try:
            return [n for n in os.listdir(self.directory) if n.startswith(database + "-")]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TargetError(f"{self.url}: {exc.strerror or exc}") from None

    def delete(self, name: str) -> None:
        try:
            (self.directory / name).unlink(missing_ok=True)
        except OSError as exc:
            raise TargetError(f"{self.directory / name}: {exc.strerror or exc}") from None

    def local_path(self, name: str) -> Path | None:
        return self.directory / name


# --- S3 -------------------------------------------------------------------------------------


def _s3_error(url: str, exc: Exception) -> JobError:
    from botocore.exceptions import ClientError, EndpointConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return TargetError(f"{url}: {error.get('Code', 'error')}: {error.get('Message', '')}")
    if isinstance(exc, EndpointConnectionError | ConnectionError):
        return BackendUnavailable(f"{url}: S3 endpoint unreachable: {exc}")
    return TargetError(f"{url}: {type(exc).__name__}: {exc}")


class S3Writer(Writer):
    """A multipart upload; parts of ``part_size_bytes`` are the only thing held in memory."""

    def __init__(self, target: S3Target, key: str) -> None:
        self.target = target
        self.key = key
        self._parts: list[dict[str, Any]] = []
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._committed = False
        client = target.client
        try:
            answer = client.create_multipart_upload(
                Bucket=target.bucket, Key=key, **target.put_arguments()
            )
        except Exception as exc:
            raise _s3_error(target.object_url(key), exc) from None
        self._upload_id: str | None = answer["UploadId"]

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.target.options.part_size_bytes:
            self._upload_part()

    def _upload_part(self) -> None:
        body = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        number = len(self._parts) + 1
        try:
            answer = self.target.client.upload_part(
                Bucket=self.target.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        except Exception as exc:
            raise _s3_error(self.target.object_url(self.key), exc) from None
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def commit(self) -> None:
        if self._pending or not self._parts:
            self._upload_part()
        try:
            self.target.client.complete_multipart_upload(
                Bucket=self.target.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        except Exception as exc:
            raise _s3_error(self.target.object_url(self.key), exc) from None
        self._committed = True
        self._upload_id = None

    def abort(self) -> None:
        self._pending.clear()
        if self._committed:
            self.target.delete_quietly(self.key)
        elif self._upload_id is not None:
            self.target.abort_upload(self.key, self._upload_id)
            self._upload_id = None


class S3Target(Target):
    def __init__(self, bucket: str, prefix: str, aws: AwsClients, options: S3Options) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.client = aws.s3(options.endpoint_url)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put_arguments(self) -> dict[str, str]:
        arguments = {"ContentType": "application/octet-stream"}
        if self.options.sse:
            arguments["ServerSideEncryption"] = self.options.sse
        if self.options.sse_kms_key_id:
            arguments["SSEKMSKeyId"] = self.options.sse_kms_key_id
        if self.options.storage_class:
            arguments["StorageClass"] = self.options.storage_class
        return arguments

    def prepare(self, database: str) -> None:
        """Abort multipart uploads of this database that a dead run left behind."""
        try:
            answer = self.client.list_multipart_uploads(
                Bucket=self.bucket, Prefix=self.key(database + "-")
            )
        except Exception as exc:
            raise _s3_error(self.url, exc) from None
        stale_before = time.time() - STALE_SECONDS
        for upload in answer.get("Uploads", []):
            if upload["Initiated"].timestamp() < stale_before:
                logger.warning("aborting a stale multipart upload of %s", upload["Key"])
                self.abort_upload(upload["Key"], upload["UploadId"])

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort, retrying for a while: an upload left behind is billed until it is aborted."""
        deadline = time.monotonic() + self.options.abort_retry_seconds
        delay = 0.25
        while True:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                return
            except Exception as exc:
                code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
                if code == "NoSuchUpload":
                    return
                if time.monotonic() + delay > deadline:
                    logger.error(
                        "could not abort the multipart upload of %s (%s); an S3 lifecycle "
                        "rule AbortIncompleteMultipartUpload removes it, else the next backup",
                        self.object_url(key),
                        type(exc).__name__,
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def delete_quietly(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception:
            logger.exception("could not delete %s", self.object_url(key))

    def open_writer(self, name: str) -> Writer:
        return S3Writer(self, self.key(name))

    def write_small(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.key(name), Body=data, **self.put_arguments()
            )
        except Exception as exc:
            raise _s3_error(self.object_url(self.key(name)), exc) from None

    def read_small(self, name: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            return bytes(answer["Body"].read())
        except Exception as exc:
            raise _s3_error(self.object_url(self.key(name)), exc) from None

    def read_chunks(self, name: str) -> Iterator[bytes]:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            yield from answer["Body"].iter_chunks(READ_CHUNK_BYTES)
        except Exception as exc:
            raise _s3_error(self.object_url(self.key(name)), exc) from None

    def names(self, database: str) -> list[str]:
        found = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(database + "-")):
                for item in page.get("Contents", []):
                    found.append(item["Key"].rpartition("/")[2] if self.prefix else item["Key"])
        except Exception as exc:
            raise _s3_error(self.url, exc) from None
        return found

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            raise _s3_error(self.object_url(self.key(name)), exc) from None


def configured_targets(settings: BackupSettings, aws: AwsClients) -> list[Target]:
    """Every target of ``[backup] targets``, S3 ones with the section's S3 options."""
    s3 = S3Options(
        endpoint_url=settings.s3_endpoint_url,
        part_size_bytes=settings.s3_part_size_bytes,
        sse=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
        storage_class=settings.s3_storage_class,
        abort_retry_seconds=settings.s3_abort_retry_seconds,
    )
    return [open_target(target, aws, s3) for target in settings.targets]

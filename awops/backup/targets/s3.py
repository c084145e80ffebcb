"""A backup target under an S3 prefix (AWS, or an S3-compatible endpoint: MinIO, Ceph).

A dump is a multipart upload of ``part_size_bytes`` parts, completed or aborted; about two
parts are held in memory whatever the dump's size. An abort that fails is retried for a while,
since an upload left behind is billed until it is aborted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, EndpointConnectionError

from awops.backup.names import backup_prefix
from awops.backup.targets.base import READ_CHUNK_BYTES, STALE_SECONDS, Target, TargetError, Writer
from awops.errors import BackendUnavailable, JobError

if TYPE_CHECKING:
    from awops.aws import AwsClients
    from awops.config import BackupSettings

logger = logging.getLogger(__name__)


@dataclass
class S3Options:
    endpoint_url: str = ""
    part_size_bytes: int = 8 * 1024 * 1024
    sse: str = ""
    sse_kms_key_id: str = ""
    storage_class: str = ""
    abort_retry_seconds: float = 60.0


def s3_options(settings: BackupSettings | None) -> S3Options:
    """The S3 options of ``[backup]``; the defaults without one."""
    if settings is None:
        return S3Options()
    return S3Options(
        endpoint_url=settings.s3_endpoint_url,
        part_size_bytes=settings.s3_part_size_bytes,
        sse=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
        storage_class=settings.s3_storage_class,
        abort_retry_seconds=settings.s3_abort_retry_seconds,
    )


def _s3_error(url: str, exc: Exception) -> JobError:
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
    def __init__(
        self,
        bucket: str,
        prefix: str,
        aws: AwsClients,
        options: S3Options,
        credentials: tuple[str, str] = ("", ""),
    ) -> None:
        """``credentials``: the target URL's own (key, secret), else boto3's default chain."""
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.client = aws.s3(options.endpoint_url, *credentials)

    def key(self, name: str) -> str:
        if "/" in name:  # names are flat (see awops.backup.names): never a deeper key
            raise TargetError(f"{self.url}: {name!r} is not an object name of this prefix")
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
                Bucket=self.bucket, Prefix=self.key(backup_prefix(database))
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

    def names(self, prefix: str) -> list[str]:
        return list(self.object_sizes(prefix))

    def object_sizes(self, prefix: str) -> dict[str, int]:
        found = {}
        base = self.key("")
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(prefix)):
                for item in page.get("Contents", []):
                    name = item["Key"][len(base) :]
                    if "/" not in name:  # deeper keys are not this target's
                        found[name] = int(item["Size"])
        except Exception as exc:
            raise _s3_error(self.url, exc) from None
        return found

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            raise _s3_error(self.object_url(self.key(name)), exc) from None

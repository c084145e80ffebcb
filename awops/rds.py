"""Reading an RDS instance's or Aurora cluster's backup settings and automated snapshots.

``rds-backup`` imports this at its top: botocore is imported only during an AWS call, so the
registry's start-up stays cheap. Each read turns botocore's failures into awops errors that
name the endpoint, the region and the identifier: an RDS API that cannot be reached, or an
identifier it does not know, is status ``error``, never healthy.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from awops.aws import epoch, translated_aws_errors
from awops.errors import JobError

# Statuses in which the resource serves and its automated backups run.
AVAILABLE_STATUSES = frozenset({"available", "backing-up"})
# Error codes botocore retries as throttling; once its attempts are used up they reach us.
_THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded"})
_NOT_FOUND_CODES = frozenset(
    {"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault", "DBClusterNotFound"}
)


@dataclass
class BackupState:
    """What RDS says about one instance's or cluster's automated backups."""

    kind: str  # "instance" or "cluster"
    identifier: str
    status: str
    engine: str
    retention_days: int  # BackupRetentionPeriod; 0 = automated backups disabled
    latest_restorable: float | None  # LatestRestorableTime, epoch seconds; None when absent
    deletion_protection: bool
    storage_encrypted: bool
    automated_snapshots: int  # automated snapshots in status "available"
    newest_snapshot: float | None  # SnapshotCreateTime of the newest of those

    @property
    def resource(self) -> str:
        """The ``resource`` label: ``instance/<id>`` or ``cluster/<id>``."""
        return f"{self.kind}/{self.identifier}"

    @property
    def available(self) -> bool:
        return self.status in AVAILABLE_STATUSES


def translated_errors(client: Any, what: str, subject: str) -> AbstractContextManager[None]:
    """Turn botocore's failures during ``what`` (an operation) on ``subject`` (``RDS instance
    'x'``) into :class:`BackendUnavailable` or :class:`JobError`, naming endpoint and region."""
    meta = getattr(client, "meta", None)
    where = f"{getattr(meta, 'endpoint_url', 'RDS')} (region {getattr(meta, 'region_name', '?')})"

    def failed(code: str, message: str, attempts: int) -> JobError:
        if code in _NOT_FOUND_CODES:
            return JobError(f"{subject} not found at {where}: check the identifier and the region")
        if code in _THROTTLING_CODES:
            return JobError(
                f"RDS throttled {what} of {subject} ({code}) after {attempts} attempt(s); "
                "raise [dynamodb] max_attempts or run the job less often"
            )
        return JobError(f"{what} of {subject} at {where} failed: {code}: {message}")

    return translated_aws_errors("RDS", where, f"{what} of {subject}", what, failed)


def read_instance(client: Any, identifier: str) -> BackupState:
    """``DescribeDBInstances`` and the instance's automated snapshots.

    An Aurora (or Multi-AZ DB cluster) member keeps no backups of its own: that is an error
    naming the cluster to configure instead.
    """
    subject = f"RDS instance {identifier!r}"
    instance = _describe_one(
        client,
        "DescribeDBInstances",
        "describe_db_instances",
        "DBInstances",
        subject,
        DBInstanceIdentifier=identifier,
    )
    cluster = instance.get("DBClusterIdentifier")
    if cluster:
        raise JobError(
            f"{subject} is a member of cluster {cluster!r}, whose backups are "
            f'the cluster\'s: set [jobs.rds-backup] cluster = "{cluster}" instead of instance'
        )
    count, newest = _newest_available(
        client,
        "describe_db_snapshots",
        "DBSnapshots",
        subject,
        DBInstanceIdentifier=identifier,
        SnapshotType="automated",
    )
    status = instance.get("DBInstanceStatus", "")
    return _backup_state("instance", identifier, instance, status, count, newest)


def read_cluster(client: Any, identifier: str) -> BackupState:
    """``DescribeDBClusters`` and the cluster's automated cluster snapshots."""
    subject = f"RDS cluster {identifier!r}"
    cluster = _describe_one(
        client,
        "DescribeDBClusters",
        "describe_db_clusters",
        "DBClusters",
        subject,
        DBClusterIdentifier=identifier,
    )
    count, newest = _newest_available(
        client,
        "describe_db_cluster_snapshots",
        "DBClusterSnapshots",
        subject,
        DBClusterIdentifier=identifier,
        SnapshotType="automated",
    )
    return _backup_state("cluster", identifier, cluster, cluster.get("Status", ""), count, newest)


def _describe_one(
    client: Any, operation: str, method: str, key: str, subject: str, **request: str
) -> dict[str, Any]:
    """The one resource ``operation`` (the client's ``method``) answers in ``key``."""
    with translated_errors(client, operation, subject):
        answer = getattr(client, method)(**request)
    found: list[dict[str, Any]] = answer.get(key, [])
    if not found:
        raise JobError(f"{subject} not found")
    return found[0]


def _backup_state(
    kind: str,
    identifier: str,
    described: dict[str, Any],
    status: Any,
    count: int,
    newest: float | None,
) -> BackupState:
    """The fields DescribeDBInstances and DescribeDBClusters name alike (status aside)."""
    return BackupState(
        kind=kind,
        identifier=identifier,
        status=str(status),
        engine=str(described.get("Engine", "")),
        retention_days=int(described.get("BackupRetentionPeriod", 0)),
        latest_restorable=epoch(described.get("LatestRestorableTime")),
        deletion_protection=bool(described.get("DeletionProtection", False)),
        storage_encrypted=bool(described.get("StorageEncrypted", False)),
        automated_snapshots=count,
        newest_snapshot=newest,
    )


def _newest_available(
    client: Any, operation: str, key: str, subject: str, **request: str
) -> tuple[int, float | None]:
    """(count, newest SnapshotCreateTime) of the snapshots in status ``available``, every page.

    A snapshot still ``creating`` is not a backup yet and never counts.
    """
    count = 0
    newest: float | None = None
    what = client.meta.method_to_api_mapping.get(operation, operation)
    with translated_errors(client, what, subject):
        for page in client.get_paginator(operation).paginate(**request):
            for snapshot in page.get(key, []):
                created = epoch(snapshot.get("SnapshotCreateTime"))
                if snapshot.get("Status") != "available" or created is None:
                    continue
                count += 1
                newest = created if newest is None else max(newest, created)
    return count, newest

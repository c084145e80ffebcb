"""Reading an RDS instance's or Aurora cluster's backup settings and automated snapshots.

``rds-backup`` imports this at its top: botocore is imported only during an AWS call, so the
registry's start-up stays cheap. Each read turns botocore's failures into awops errors that
name the endpoint, the region and the identifier: an RDS API that cannot be reached, or an
identifier it does not know, is status ``error``, never healthy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from awops.errors import BackendUnavailable, JobError

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


def epoch(value: Any) -> float | None:
    """botocore's datetime as epoch seconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@contextmanager
def translated_errors(client: Any, what: str, subject: str) -> Iterator[None]:
    """Turn botocore's failures during ``what`` (an operation) on ``subject`` (``RDS instance
    'x'``) into :class:`BackendUnavailable` or :class:`JobError`, naming endpoint and region."""
    # botocore is loaded with the first AWS call: job modules import this one when they are
    # configured, and listing or validating them must not pay for botocore.
    from botocore import exceptions as bex

    meta = getattr(client, "meta", None)
    where = f"{getattr(meta, 'endpoint_url', 'RDS')} (region {getattr(meta, 'region_name', '?')})"
    try:
        yield
    except (bex.ConnectionError, bex.HTTPClientError) as exc:
        raise BackendUnavailable(
            f"RDS endpoint {where} unreachable during {what} of {subject}: {type(exc).__name__}"
        ) from None
    except bex.NoCredentialsError:
        raise BackendUnavailable(
            f"no AWS credentials for RDS ({what}): set AWS_ACCESS_KEY_ID or a role"
        ) from None
    except bex.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message", "")
        if code in _NOT_FOUND_CODES:
            raise JobError(
                f"{subject} not found at {where}: check the identifier and the region"
            ) from None
        if code in _THROTTLING_CODES:
            attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
            raise JobError(
                f"RDS throttled {what} of {subject} ({code}) after {attempts} attempt(s); "
                "raise [dynamodb] max_attempts or run the job less often"
            ) from None
        raise JobError(f"{what} of {subject} at {where} failed: {code}: {message}") from None


def read_instance(client: Any, identifier: str) -> BackupState:
    """``DescribeDBInstances`` and the instance's automated snapshots.

    An Aurora (or Multi-AZ DB cluster) member keeps no backups of its own: that is an error
    naming the cluster to configure instead.
    """
    subject = f"RDS instance {identifier!r}"
    with translated_errors(client, "DescribeDBInstances", subject):
        answer = client.describe_db_instances(DBInstanceIdentifier=identifier)
    instances = answer.get("DBInstances", [])
    if not instances:
        raise JobError(f"{subject} not found")
    instance = instances[0]
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
    return BackupState(
        kind="instance",
        identifier=identifier,
        status=str(instance.get("DBInstanceStatus", "")),
        engine=str(instance.get("Engine", "")),
        retention_days=int(instance.get("BackupRetentionPeriod", 0)),
        latest_restorable=epoch(instance.get("LatestRestorableTime")),
        deletion_protection=bool(instance.get("DeletionProtection", False)),
        storage_encrypted=bool(instance.get("StorageEncrypted", False)),
        automated_snapshots=count,
        newest_snapshot=newest,
    )


def read_cluster(client: Any, identifier: str) -> BackupState:
    """``DescribeDBClusters`` and the cluster's automated cluster snapshots."""
    subject = f"RDS cluster {identifier!r}"
    with translated_errors(client, "DescribeDBClusters", subject):
        answer = client.describe_db_clusters(DBClusterIdentifier=identifier)
    clusters = answer.get("DBClusters", [])
    if not clusters:
        raise JobError(f"{subject} not found")
    cluster = clusters[0]
    count, newest = _newest_available(
        client,
        "describe_db_cluster_snapshots",
        "DBClusterSnapshots",
        subject,
        DBClusterIdentifier=identifier,
        SnapshotType="automated",
    )
    return BackupState(
        kind="cluster",
        identifier=identifier,
        status=str(cluster.get("Status", "")),
        engine=str(cluster.get("Engine", "")),
        retention_days=int(cluster.get("BackupRetentionPeriod", 0)),
        latest_restorable=epoch(cluster.get("LatestRestorableTime")),
        deletion_protection=bool(cluster.get("DeletionProtection", False)),
        storage_encrypted=bool(cluster.get("StorageEncrypted", False)),
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

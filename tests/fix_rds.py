"""RDS on moto's server: instances, Aurora clusters, and a proxy for the answers moto cannot give.

What moto 5 does and AWS does not, which the tests work with:

* ``LatestRestorableTime`` is always "now", and the only automated snapshot is the one taken
  when the instance or cluster is created. Tests that need them old move awops' clock instead.
* Automated snapshots can be deleted (AWS refuses); tests use that to reach "no automated
  snapshot", the state AWS is in before an instance's first backup.
* Every snapshot is ``available`` at once and ``LatestRestorableTime`` is never missing:
  :class:`RdsRewritingProxy` edits moto's XML on its way to boto3 into the shape AWS answers
  for a new instance whose first backup is still running (status ``backing-up``, no
  ``LatestRestorableTime``, snapshot ``creating``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import Message
from typing import Any
from urllib.parse import parse_qs

import boto3

from tests.fix_faultproxy import LoopbackProxy, Reply
from tests.fix_moto import MotoServer

INSTANCE = "actingweb-db"
CLUSTER = "actingweb-aurora"
# How AWS' query protocol answers an error (AccessDenied, throttling, ...).
_ERROR_TEMPLATE = (
    '<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
    "<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>8f1c9a4e-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
)


def rds_client(moto: MotoServer) -> Any:
    return boto3.client(
        "rds",
        endpoint_url=moto.url,
        region_name="us-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_instance(
    client: Any,
    identifier: str = INSTANCE,
    *,
    retention_days: int = 7,
    deletion_protection: bool = True,
    encrypted: bool = True,
) -> None:
    """An RDS PostgreSQL instance as ActingWeb would run on; moto snapshots it at once."""
    client.create_db_instance(
        DBInstanceIdentifier=identifier,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        MasterUsername="actingweb",
        MasterUserPassword="not-a-real-password",
        AllocatedStorage=20,
        BackupRetentionPeriod=retention_days,
        DeletionProtection=deletion_protection,
        StorageEncrypted=encrypted,
    )


def create_cluster(
    client: Any,
    identifier: str = CLUSTER,
    *,
    retention_days: int = 7,
    deletion_protection: bool = True,
    encrypted: bool = True,
) -> None:
    """An Aurora PostgreSQL cluster; moto takes its automated cluster snapshot at once."""
    client.create_db_cluster(
        DBClusterIdentifier=identifier,
        Engine="aurora-postgresql",
        MasterUsername="actingweb",
        MasterUserPassword="not-a-real-password",
        BackupRetentionPeriod=retention_days,
        DeletionProtection=deletion_protection,
        StorageEncrypted=encrypted,
    )


def delete_automated_snapshots(client: Any, instance: str = INSTANCE) -> None:
    """moto lets automated snapshots be deleted; AWS does not (see the module docstring)."""
    answer = client.describe_db_snapshots(DBInstanceIdentifier=instance, SnapshotType="automated")
    for snapshot in answer["DBSnapshots"]:
        client.delete_db_snapshot(DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"])


def drop_element(name: str) -> Callable[[str], str]:
    """A rewrite that removes every ``<name>...</name>`` from an answer."""
    return lambda body: re.sub(rf"<{name}>[^<]*</{name}>", "", body)


def set_element(name: str, value: str) -> Callable[[str], str]:
    """A rewrite that sets every ``<name>`` of an answer to ``value``."""
    return lambda body: re.sub(rf"<{name}>[^<]*</{name}>", f"<{name}>{value}</{name}>", body)


class RdsRewritingProxy(LoopbackProxy):
    """Forwards RDS' query-protocol requests to moto; rewrites the answers of chosen actions."""

    def __init__(self, upstream: str) -> None:
        self.rewrites: dict[str, list[Callable[[str], str]]] = {}
        self.errors: dict[str, tuple[int, str, str]] = {}
        self.actions: list[str] = []
        super().__init__(upstream)

    def rewrite(self, action: str, *edits: Callable[[str], str]) -> None:
        self.rewrites.setdefault(action, []).extend(edits)

    def refuse(self, action: str, code: str, message: str, status: int = 403) -> None:
        """Answer ``action`` with an AWS query-protocol error instead of forwarding it."""
        self.errors[action] = (status, code, message)

    def answer(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        action = parse_qs(body.decode()).get("Action", [""])[0]
        self.actions.append(action)
        if action in self.errors:
            status, code, message = self.errors[action]
            reply_headers = [("Content-Type", "text/xml")]
            answer = _ERROR_TEMPLATE.format(code=code, message=message).encode()
        else:
            status, reply_headers, answer = self.forward("POST", path, headers, body)
        if status == 200 and action in self.rewrites:
            text = answer.decode()
            for edit in self.rewrites[action]:
                text = edit(text)
            answer = text.encode()
        return status, reply_headers, answer

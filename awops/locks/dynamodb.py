"""The DynamoDB lock backend (DynamoDB-only deployments): one lease item per job.

Imported only when a job that takes the lock locks in DynamoDB.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from awops.dynamodb import error_code
from awops.errors import BackendUnavailable, first_line
from awops.locks.base import SLOT_EPSILON, Claim, Lease, LockBackend, slot_text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from awops.aws import AwsClients
    from awops.config import LockSettings

logger = logging.getLogger(__name__)

_CONDITION_FAILED = "ConditionalCheckFailedException"


def _version_token() -> str:
    """128 random bits, as ``secrets.token_hex(16)`` gives, without importing ``secrets`` (and
    with it ``hmac`` and ``random``) into every run-once that takes a lock."""
    return os.urandom(16).hex()


@dataclass(frozen=True)
class LeaseRecord:
    """A job's lease item as read: its version token, holder, and slot record."""

    version: str
    holder: str
    held: bool
    done: bool
    last_slot: float
    lease_seconds: float


@dataclass
class _Sighting:
    version: str
    since: float  # time.monotonic() when this version was first seen
    changed: bool  # a different version was seen before: the holder is heartbeating


class DynamoDBLocks(LockBackend):
    """Job locks in the table ``<prefix>_<[lock] table>``, one item per job.

    Mutual exclusion is a conditional write on a random ``version`` token: a replica takes the
    lease only with ``attribute_not_exists(lock_key)`` (no item yet) or ``version = <the
    version it read>``, writing a fresh token, so of two replicas that read the same item only
    one write succeeds. The holder replaces the token at every heartbeat under the same
    condition. Another replica takes a held lease over only after it has watched the *same*
    version for a whole lease period on its own monotonic clock, so no two clocks are ever
    compared; a token that changes under its eyes means the holder is alive.

    The slot record (``last_slot``, ``done``, ``runs``, ``holder``) is written in the same
    conditional writes, so only the lease's holder writes it.
    """

    def __init__(self, aws: AwsClients, table: str, settings: LockSettings, owner: str) -> None:
        self.aws = aws
        self.table = table
        self.settings = settings
        self.owner = owner
        self._table_ready = False
        self._sightings: dict[str, _Sighting] = {}
        self._lock = threading.Lock()

    @property
    def poll_seconds(self) -> float:
        return max(0.2, min(1.0, self.settings.lease_seconds / 10))

    def claim(self, job: str, slot: float | None, should_stop: Callable[[], bool]) -> Claim:
        try:
            return self._claim(job, slot, should_stop)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable(
                f"DynamoDB lock table {self.table}: cannot take the job lock: {_aws_error(exc)}"
            ) from None

    def _claim(self, job: str, slot: float | None, should_stop: Callable[[], bool]) -> Claim:
        client: DynamoDBClient = self.aws.dynamodb()
        self._ensure_table(client)
        while True:
            item = self._get(client, job)
            if item is None or not item.held:
                if (
                    slot is not None
                    and item is not None
                    and item.done
                    and item.last_slot >= slot - SLOT_EPSILON
                ):
                    return Claim(None, f"already run for this slot by {item.holder}")
                took_over = item is not None and not item.done and slot is not None
                lease = self._take(client, job, slot, item, took_over)
                if lease is None:
                    continue  # another replica wrote first; look again
                return Claim(lease, took_over=took_over)
            verdict = self._watch(job, item)
            if verdict == "expired":
                logger.warning(
                    "lease of %s held by %s saw no heartbeat for %.0f s; taking it over",
                    job,
                    item.holder,
                    self._lease_period(item),
                )
                lease = self._take(client, job, slot, item, True)
                if lease is None:
                    continue
                return Claim(lease, took_over=True)
            if verdict == "alive" or should_stop():
                reason = f"another replica is running it (DynamoDB lease held by {item.holder})"
                return Claim(None, reason)
            time.sleep(self.poll_seconds)

    def _lease_period(self, item: LeaseRecord) -> float:
        return max(self.settings.lease_seconds, item.lease_seconds)

    def _watch(self, job: str, item: LeaseRecord) -> Literal["alive", "expired", "watching"]:
        """``alive`` once the holder's version changed under our eyes, ``expired`` once the same
        version stood for a lease period, else ``watching``."""
        now = time.monotonic()
        with self._lock:
            seen = self._sightings.get(job)
            if seen is None or seen.version != item.version:
                self._sightings[job] = _Sighting(item.version, now, changed=seen is not None)
                return "alive" if seen is not None else "watching"
            if now - seen.since >= self._lease_period(item):
                return "expired"
        return "watching"

    def _get(self, client: DynamoDBClient, job: str) -> LeaseRecord | None:
        answer = client.get_item(
            TableName=self.table, Key={"lock_key": {"S": job}}, ConsistentRead=True
        )
        raw = answer.get("Item")
        if raw is None:
            return None
        return LeaseRecord(
            version=raw["version"]["S"],
            holder=raw.get("holder", {}).get("S", "?"),
            held=raw.get("held", {}).get("BOOL", False),
            done=raw.get("done", {}).get("BOOL", True),
            last_slot=float(raw.get("last_slot", {}).get("N", "-1")),
            lease_seconds=float(raw.get("lease_seconds", {}).get("N", "0")),
        )

    def _take(
        self,
        client: DynamoDBClient,
        job: str,
        slot: float | None,
        item: LeaseRecord | None,
        took_over: bool,
    ) -> _DynamoDBLease | None:
        """Write a fresh version over the one in ``item`` (None: over no item at all); None when
        another replica's write came first."""
        version = _version_token()
        values: dict[str, AttributeValueTypeDef] = {
            ":new": {"S": version},
            ":holder": {"S": self.owner},
            ":true": {"BOOL": True},
            ":lease": {"N": repr(self.settings.lease_seconds)},
            ":at": {"S": _now_text()},
            ":one": {"N": "1"},
        }
        update = "SET #v = :new, holder = :holder, held = :true, lease_seconds = :lease"
        update += ", heartbeat_at = :at"
        if slot is not None:
            update += ", last_slot = :slot, done = :false"
            values[":slot"] = {"N": repr(slot)}
            values[":false"] = {"BOOL": False}
        update += " ADD runs :one"
        if item is None:
            condition = "attribute_not_exists(lock_key)"
        else:
            condition = "#v = :seen"
            values[":seen"] = {"S": item.version}
        try:
            client.update_item(
                TableName=self.table,
                Key={"lock_key": {"S": job}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if error_code(exc) == _CONDITION_FAILED:
                return None
            raise
        with self._lock:
            self._sightings.pop(job, None)
        if slot is not None:
            logger.info("lock taken for slot %s", slot_text(slot))
        lease = _DynamoDBLease(self, client, job, slot, version)
        lease.start()
        return lease

    def _ensure_table(self, client: DynamoDBClient) -> None:
        if self._table_ready:
            return
        try:
            client.describe_table(TableName=self.table)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            if not self.settings.create_table:
                raise BackendUnavailable(
                    f"DynamoDB lock table {self.table} does not exist "
                    "(create it, or set lock.create_table = true)"
                ) from None
            self._create_table(client)
        self._table_ready = True

    def _create_table(self, client: DynamoDBClient) -> None:
        logger.info("creating the DynamoDB lock table %s", self.table)
        try:
            client.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "lock_key", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "lock_key", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":  # another replica created it
                raise
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.describe_table(TableName=self.table)["Table"]["TableStatus"]
            if status == "ACTIVE":
                return
            time.sleep(0.5)
        raise BackendUnavailable(f"DynamoDB lock table {self.table} did not become ACTIVE")


class _DynamoDBLease(Lease):
    """Held while its version token is the item's: every heartbeat replaces the token under the
    condition that it is still the one this lease wrote."""

    def __init__(
        self,
        locks: DynamoDBLocks,
        client: DynamoDBClient,
        job: str,
        slot: float | None,
        version: str,
    ) -> None:
        super().__init__(job, slot, max(0.5, locks.settings.lease_seconds / 3))
        self._locks = locks
        self._client = client
        self._version = version
        self._last_heartbeat = time.monotonic()

    def _replace_version(
        self, extra_update: str = "", extra_values: dict[str, AttributeValueTypeDef] | None = None
    ) -> bool:
        new = _version_token()
        try:
            self._client.update_item(
                TableName=self._locks.table,
                Key={"lock_key": {"S": self.job}},
                UpdateExpression="SET #v = :new, heartbeat_at = :at" + extra_update,
                ConditionExpression="#v = :mine",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={
                    ":new": {"S": new},
                    ":mine": {"S": self._version},
                    ":at": {"S": _now_text()},
                    **(extra_values or {}),
                },
            )
        except Exception as exc:
            if error_code(exc) == _CONDITION_FAILED:
                return False
            raise
        self._version = new
        self._last_heartbeat = time.monotonic()
        return True

    def _heartbeat(self) -> bool:
        return self._replace_version()

    def _still_ours_after_failure(self) -> bool:
        # Unreachable for a whole lease period: another replica may have taken it over.
        age = time.monotonic() - self._last_heartbeat
        return age < self._locks.settings.lease_seconds * 2 / 3

    def _release(self) -> None:
        values: dict[str, AttributeValueTypeDef] = {":false": {"BOOL": False}}
        update = ", held = :false"
        if self.slot is not None:
            update += ", done = :true"
            values[":true"] = {"BOOL": True}
        if not self._replace_version(update, values):
            logger.warning("the lease of %s was taken over before it was released", self.job)


def _now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _aws_error(exc: BaseException) -> str:
    return error_code(exc) or first_line(exc)

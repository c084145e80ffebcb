"""Exactly once across replicas: a lock around every run and a record of the last slot run.

A scheduled run belongs to a *slot*: the schedule's fire time it was started for (intervals are
aligned to the Unix epoch, so every replica computes the same slots). Before it runs, the
runner asks :class:`Locks` for a claim:

* the job's lock must be free (nobody is running it now), and
* the slot must not have been run already (a replica that fires a few seconds later for the
  same slot, because of jitter or clock skew, finds it done and skips).

Two backends keep both facts:

* **PostgreSQL**: ``pg_try_advisory_lock`` on a dedicated session (never a pooled connection:
  the lock lives exactly as long as the session, so a killed replica's lock goes with its
  TCP connection) with a 64-bit key derived from ``('awops', database, job)``, plus one row per
  job in a small table (``last_slot``, ``done``, ``runs``) written while the lock is held.
* **DynamoDB** (DynamoDB-only deployments): one lease item per job in ``<prefix>_awops_locks``,
  written with conditional writes on a random ``version`` token that the holder replaces at
  every heartbeat. Another replica takes the lease over only after it has watched the *same*
  version for a whole lease period on its own monotonic clock, so no two clocks are compared.

A run whose holder died before it finished (``done`` false, lock free) is run again by the next
replica that claims it: the work moves instead of being lost.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from awops.errors import BackendUnavailable

if TYPE_CHECKING:
    from awops.aws import AwsClients
    from awops.config import LockSettings
    from awops.pg import Connection, PgConnector
    from awops.schedule import Schedule

logger = logging.getLogger(__name__)

# Slots are compared as floats computed the same way everywhere; this absorbs rounding only.
_SLOT_EPSILON = 1e-3


def _version_token() -> str:
    """128 random bits, as ``secrets.token_hex(16)`` gives, without importing ``secrets`` (and
    with it ``hmac`` and ``random``) into every run-once that takes a lock."""
    return os.urandom(16).hex()


def default_owner() -> str:
    """Who holds a lock, for logs and the lock record: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def advisory_key(database: str, job: str) -> int:
    """The signed 64-bit advisory lock key for ``('awops', database, job)``."""
    digest = hashlib.blake2b(
        b"\0".join(part.encode() for part in ("awops", database, job)), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def schedule_slot(schedule: Schedule, now: float) -> float:
    """The fire time (Unix seconds) of the run ``schedule`` is due for at ``now``.

    Intervals are aligned to the epoch (the daemon's triggers fire on those boundaries plus
    jitter); a cron schedule's slot is its latest fire time at or before ``now``.
    """
    if schedule.interval_seconds is not None:
        return math.floor(now / schedule.interval_seconds) * schedule.interval_seconds
    return _previous_cron_fire(schedule, now)


def _previous_cron_fire(schedule: Schedule, now: float) -> float:
    import datetime as dt

    from awops.triggers import UTC, build_trigger

    trigger = build_trigger(schedule)
    moment = dt.datetime.fromtimestamp(now, UTC)
    lookback = dt.timedelta(minutes=2)
    while True:
        fire = trigger.get_next_fire_time(None, moment - lookback)
        if fire is not None and fire <= moment:
            break
        if lookback > dt.timedelta(days=800):
            return now  # a schedule that never fired: the run is its own slot
        lookback *= 4
    while True:
        following = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        if following is None or following > moment:
            return float(fire.timestamp())
        fire = following


@dataclass
class Claim:
    """What :meth:`Locks.claim` answers: a lease to run under, or why not."""

    lease: Lease | None
    reason: str = ""
    holder: str = ""
    took_over: bool = False

    @property
    def acquired(self) -> bool:
        return self.lease is not None


class Lease:
    """A held lock. ``lost`` is set when the lock may have passed to someone else."""

    def __init__(self, job: str, slot: float | None, heartbeat_seconds: float) -> None:
        self.job = job
        self.slot = slot
        self.heartbeat_seconds = heartbeat_seconds
        self.lost = threading.Event()
        self._released = threading.Event()
        self._on_lost: list[Callable[[], None]] = []
        self._thread = threading.Thread(
            target=self._heartbeat_loop, name=f"awops-lease-{job}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._on_lost.append(callback)

    def release(self) -> None:
        """Mark the slot done and let go; never raises (a dead session has let go already)."""
        self._released.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        try:
            self._release()
        except Exception as exc:
            logger.warning("releasing the lock of %s failed: %s", self.job, _first_line(exc))

    def _heartbeat_loop(self) -> None:
        while not self._released.wait(self.heartbeat_seconds):
            try:
                alive = self._heartbeat()
            except Exception as exc:
                logger.warning("lock heartbeat of %s failed: %s", self.job, _first_line(exc))
                alive = self._still_ours_after_failure()
            if not alive:
                logger.error("lost the lock of %s; stopping the run", self.job)
                self.lost.set()
                for callback in list(self._on_lost):
                    try:
                        callback()
                    except Exception:
                        logger.warning("a lock-lost callback failed", exc_info=True)
                return

    def _heartbeat(self) -> bool:
        raise NotImplementedError

    def _still_ours_after_failure(self) -> bool:
        return False

    def _release(self) -> None:
        raise NotImplementedError


class Locks:
    """Chooses each job's lock backend from ``[lock]`` and hands out claims."""

    def __init__(
        self,
        settings: LockSettings,
        pg: Callable[[], PgConnector],
        aws: Callable[[], AwsClients],
        dynamodb_prefix: str,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.owner = owner or default_owner()
        self._pg_factory = pg
        self._aws_factory = aws
        self._dynamodb_prefix = dynamodb_prefix
        self._pg: PgLocks | None = None
        self._dynamodb: DynamoDBLocks | None = None
        self._lock = threading.Lock()

    def backend_for(self, job_backend: str) -> str:
        choice = self.settings.backend
        return job_backend if choice == "auto" else choice

    def applies_to(self, changes_data: bool) -> bool:
        if self.settings.backend == "none":
            return False
        return changes_data or self.settings.scope == "all"

    def claim(
        self,
        job: str,
        job_backend: str,
        slot: float | None,
        should_stop: Callable[[], bool] = lambda: False,
        changes_data: bool = True,
    ) -> Claim | None:
        """A claim for one run, or None when the job runs unlocked (``backend = "none"``, or a
        read-only check under ``scope = "changes-data"``).

        Raises :class:`BackendUnavailable` when the lock's backend cannot be reached.
        """
        if not self.applies_to(changes_data):
            return None
        backend = self.backend_for(job_backend)
        with self._lock:
            if backend == "postgresql":
                if self._pg is None:
                    self._pg = PgLocks(self._pg_factory(), self.settings, self.owner)
                impl: PgLocks | DynamoDBLocks = self._pg
            else:
                if self._dynamodb is None:
                    table = f"{self._dynamodb_prefix}_{self.settings.table}"
                    self._dynamodb = DynamoDBLocks(
                        self._aws_factory(), table, self.settings, self.owner
                    )
                impl = self._dynamodb
        return impl.claim(job, slot, should_stop)


# -- PostgreSQL -------------------------------------------------------------------------------


class PgLocks:
    def __init__(self, pg: PgConnector, settings: LockSettings, owner: str) -> None:
        self.pg = pg
        self.settings = settings
        self.owner = owner
        self._table_ready = False

    def _table(self) -> Any:
        from psycopg import sql

        return sql.Identifier(self.pg.settings.search_schema, self.settings.table)

    def _connect(self) -> Connection:
        import psycopg

        lease = self.settings.lease_seconds
        kwargs = {
            **self.pg.connect_kwargs(),
            "application_name": f"{self.pg.settings.application_name}-lock"[:63],
            # A replica cut off from the server loses its session, and so its lock, in
            # about a lease period instead of the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": max(1, int(lease / 3)),
            "keepalives_interval": max(1, int(lease / 6)),
            "keepalives_count": 3,
            "tcp_user_timeout": int(lease * 1000),
        }
        try:
            return psycopg.connect(**kwargs, autocommit=True)
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(
                f"PostgreSQL {self.pg.target}: cannot take the job lock: {_first_line(exc)}"
            ) from None

    def claim(self, job: str, slot: float | None, should_stop: Callable[[], bool]) -> Claim:
        import psycopg

        conn = self._connect()
        try:
            key = advisory_key(self.pg.settings.dbname, job)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
            if not row or not row[0]:
                conn.close()
                return Claim(None, "another replica is running it (PostgreSQL advisory lock)")
            took_over = False
            if slot is not None:
                self._ensure_table(conn)
                record = conn.execute(
                    _sql("SELECT last_slot, done, holder FROM {} WHERE job = %s", self._table()),
                    [job],
                ).fetchone()
                if record is not None:
                    last_slot, done, holder = record
                    if last_slot >= slot - _SLOT_EPSILON and done:
                        conn.close()
                        return Claim(None, f"already run for this slot by {holder}", holder)
                    if not done:
                        took_over = True
                        logger.warning(
                            "%s stopped before finishing its run of %s; running it here",
                            holder,
                            job,
                        )
                conn.execute(
                    _sql(
                        "INSERT INTO {} AS t (job, last_slot, done, runs, holder, updated_at)"
                        " VALUES (%s, %s, false, 1, %s, now())"
                        " ON CONFLICT (job) DO UPDATE SET last_slot = GREATEST("
                        "t.last_slot, EXCLUDED.last_slot), done = false, runs = t.runs + 1,"
                        " holder = EXCLUDED.holder, updated_at = now()",
                        self._table(),
                    ),
                    [job, slot, self.owner],
                )
                logger.info("lock taken for slot %s", _slot_text(slot))
        except psycopg.Error as exc:
            conn.close()
            raise BackendUnavailable(
                f"PostgreSQL {self.pg.target}: cannot take the job lock: {_first_line(exc)}"
            ) from None
        lease = _PgLease(self, conn, key, job, slot)
        lease.start()
        return Claim(lease, took_over=took_over)

    def _ensure_table(self, conn: Connection) -> None:
        if self._table_ready or not self.settings.create_table:
            return
        with conn.transaction():
            # Replicas starting together would race on CREATE TABLE IF NOT EXISTS.
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)",
                [advisory_key(self.pg.settings.dbname, "awops-create-lock-table")],
            )
            conn.execute(
                _sql(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " job text PRIMARY KEY,"
                    " last_slot double precision NOT NULL,"
                    " done boolean NOT NULL,"
                    " runs bigint NOT NULL DEFAULT 0,"
                    " holder text NOT NULL,"
                    " updated_at timestamptz NOT NULL DEFAULT now())",
                    self._table(),
                )
            )
        self._table_ready = True


class _PgLease(Lease):
    def __init__(
        self, locks: PgLocks, conn: Connection, key: int, job: str, slot: float | None
    ) -> None:
        super().__init__(job, slot, max(1.0, locks.settings.lease_seconds / 3))
        self._locks = locks
        self._conn = conn
        self._key = key
        self._conn_lock = threading.Lock()

    def _heartbeat(self) -> bool:
        with self._conn_lock:
            self._conn.execute("SELECT 1")
        return True

    def _release(self) -> None:
        try:
            with self._conn_lock:
                if self.slot is not None and not self.lost.is_set():
                    self._conn.execute(
                        _sql(
                            "UPDATE {} SET done = true, updated_at = now()"
                            " WHERE job = %s AND holder = %s",
                            self._locks._table(),
                        ),
                        [self.job, self._locks.owner],
                    )
                self._conn.execute("SELECT pg_advisory_unlock(%s)", [self._key])
        finally:
            self._conn.close()


# -- DynamoDB ---------------------------------------------------------------------------------


@dataclass
class _Sighting:
    version: str
    since: float  # time.monotonic() when this version was first seen
    changed: bool  # a different version was seen before: the holder is heartbeating


class DynamoDBLocks:
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
        client = self.aws.dynamodb()
        self._ensure_table(client)
        while True:
            item = self._get(client, job)
            if item is None or not item["held"]:
                if (
                    slot is not None
                    and item is not None
                    and item["done"]
                    and item["last_slot"] >= slot - _SLOT_EPSILON
                ):
                    return Claim(None, f"already run for this slot by {item['holder']}")
                took_over = item is not None and not item["done"] and slot is not None
                lease = self._take(client, job, slot, item, took_over)
                if lease is None:
                    continue  # another replica wrote first; look again
                return Claim(lease, took_over=took_over)
            verdict = self._watch(job, item)
            if verdict == "expired":
                logger.warning(
                    "lease of %s held by %s saw no heartbeat for %.0f s; taking it over",
                    job,
                    item["holder"],
                    self._lease_period(item),
                )
                lease = self._take(client, job, slot, item, True)
                if lease is None:
                    continue
                return Claim(lease, took_over=True)
            if verdict == "alive" or should_stop():
                reason = f"another replica is running it (DynamoDB lease held by {item['holder']})"
                return Claim(None, reason, item["holder"])
            time.sleep(self.poll_seconds)

    def _lease_period(self, item: dict[str, Any]) -> float:
        return max(self.settings.lease_seconds, float(item.get("lease_seconds") or 0))

    def _watch(self, job: str, item: dict[str, Any]) -> str:
        """``alive`` once the holder's version changed under our eyes, ``expired`` once the same
        version stood for a lease period, else ``watching``."""
        now = time.monotonic()
        with self._lock:
            seen = self._sightings.get(job)
            if seen is None or seen.version != item["version"]:
                self._sightings[job] = _Sighting(item["version"], now, changed=seen is not None)
                return "alive" if seen is not None else "watching"
            if now - seen.since >= self._lease_period(item):
                return "expired"
        return "watching"

    def _get(self, client: Any, job: str) -> dict[str, Any] | None:
        answer = client.get_item(
            TableName=self.table, Key={"lock_key": {"S": job}}, ConsistentRead=True
        )
        raw = answer.get("Item")
        if raw is None:
            return None
        return {
            "version": raw["version"]["S"],
            "holder": raw.get("holder", {}).get("S", "?"),
            "held": raw.get("held", {}).get("BOOL", False),
            "done": raw.get("done", {}).get("BOOL", True),
            "last_slot": float(raw.get("last_slot", {}).get("N", "-1")),
            "lease_seconds": float(raw.get("lease_seconds", {}).get("N", "0")),
        }

    def _take(
        self,
        client: Any,
        job: str,
        slot: float | None,
        item: dict[str, Any] | None,
        took_over: bool,
    ) -> _DynamoDBLease | None:
        version = _version_token()
        names = {"#v": "version"}
        values: dict[str, Any] = {
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
            values[":seen"] = {"S": item["version"]}
        try:
            client.update_item(
                TableName=self.table,
                Key={"lock_key": {"S": job}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        with self._lock:
            self._sightings.pop(job, None)
        if slot is not None:
            logger.info("lock taken for slot %s", _slot_text(slot))
        lease = _DynamoDBLease(self, client, job, slot, version)
        lease.start()
        return lease

    def _ensure_table(self, client: Any) -> None:
        if self._table_ready:
            return
        try:
            client.describe_table(TableName=self.table)
        except Exception as exc:
            if _aws_code(exc) != "ResourceNotFoundException":
                raise
            if not self.settings.create_table:
                raise BackendUnavailable(
                    f"DynamoDB lock table {self.table} does not exist "
                    "(create it, or set lock.create_table = true)"
                ) from None
            self._create_table(client)
        self._table_ready = True

    def _create_table(self, client: Any) -> None:
        logger.info("creating the DynamoDB lock table %s", self.table)
        try:
            client.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "lock_key", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "lock_key", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except Exception as exc:
            if _aws_code(exc) != "ResourceInUseException":  # another replica created it
                raise
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.describe_table(TableName=self.table)["Table"]["TableStatus"]
            if status == "ACTIVE":
                return
            time.sleep(0.5)
        raise BackendUnavailable(f"DynamoDB lock table {self.table} did not become ACTIVE")


class _DynamoDBLease(Lease):
    def __init__(
        self, locks: DynamoDBLocks, client: Any, job: str, slot: float | None, version: str
    ) -> None:
        super().__init__(job, slot, max(0.5, locks.settings.lease_seconds / 3))
        self._locks = locks
        self._client = client
        self._version = version
        self._last_heartbeat = time.monotonic()

    def _replace_version(self, extra_update: str = "", extra_values: Any = None) -> bool:
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
            if _is_conditional_failure(exc):
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
        values: dict[str, Any] = {":false": {"BOOL": False}}
        update = ", held = :false"
        if self.slot is not None:
            update += ", done = :true"
            values[":true"] = {"BOOL": True}
        if not self._replace_version(update, values):
            logger.warning("the lease of %s was taken over before it was released", self.job)


# -- helpers ----------------------------------------------------------------------------------


def _sql(template: str, *identifiers: Any) -> Any:
    from psycopg import sql

    return sql.SQL(template).format(*identifiers)


def _slot_text(slot: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(slot)) + f".{int(slot % 1 * 1000):03d}Z"


def _now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _aws_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _is_conditional_failure(exc: BaseException) -> bool:
    return _aws_code(exc) == "ConditionalCheckFailedException"


def _aws_error(exc: BaseException) -> str:
    code = _aws_code(exc)
    return code or _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

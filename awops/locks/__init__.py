"""Exactly once across replicas: a lock around every run and a record of the last slot run.

A scheduled run belongs to a *slot*: the schedule's fire time it was started for
(:func:`awops.schedule.schedule_slot`; intervals are aligned to the Unix epoch, so every replica
computes the same slots). Before it runs, the runner asks :class:`Locks` for a claim:

* the job's lock must be free (nobody is running it now), and
* the slot must not have been run already (a replica that fires a few seconds later for the
  same slot, because of jitter or clock skew, finds it done and skips).

Each backend keeps both facts (:class:`LockBackend` states the duties) in a module of its own,
imported only when a job locks there:

* :mod:`awops.locks.postgresql`: a session-level advisory lock on a dedicated session, plus one
  row per job in a small table written while the lock is held.
* :mod:`awops.locks.dynamodb` (DynamoDB-only deployments): one lease item per job, written
  with conditional writes on a random version token that the holder replaces at every
  heartbeat.

A run whose holder died before it finished (``done`` false, lock free) is run again by the next
replica that claims it: the work moves instead of being lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from awops.locks.base import Claim, Lease, LockBackend, default_owner
from awops.wiring import takes_lock

if TYPE_CHECKING:
    from awops.aws import AwsClients
    from awops.config import LockSettings
    from awops.locks.dynamodb import DynamoDBLocks
    from awops.locks.postgresql import PgLocks
    from awops.pg import PgConnector

__all__ = ["Claim", "Lease", "LockBackend", "Locks", "default_owner"]


class Locks:
    """Chooses each job's lock backend from ``[lock]`` and hands out claims.

    A backend is built (and its module imported) at its first claim; ``pg`` and ``aws`` give
    the process' shared PostgreSQL connector and AWS clients then.
    """

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
        """The lock backend of a job whose own backend is ``job_backend``."""
        choice = self.settings.backend
        return job_backend if choice == "auto" else choice

    def applies_to(self, changes_data: bool) -> bool:
        """Whether a job's runs take the lock (:func:`awops.wiring.takes_lock`)."""
        return takes_lock(self.settings, changes_data)

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
        return self._backend(self.backend_for(job_backend)).claim(job, slot, should_stop)

    def _backend(self, backend: str) -> LockBackend:
        with self._lock:
            if backend == "postgresql":
                if self._pg is None:
                    # Only the backend a lock is taken in is imported (boto3 for DynamoDB).
                    from awops.locks.postgresql import PgLocks

                    self._pg = PgLocks(self._pg_factory(), self.settings, self.owner)
                return self._pg
            if self._dynamodb is None:
                from awops.locks.dynamodb import DynamoDBLocks

                table = f"{self._dynamodb_prefix}_{self.settings.table}"
                self._dynamodb = DynamoDBLocks(
                    self._aws_factory(), table, self.settings, self.owner
                )
            return self._dynamodb

"""What every lock backend provides: a claim on a job (and its slot), and a lease to run under.

A backend is a :class:`LockBackend` that hands out :class:`Lease` objects; each lives in its own
module (``postgresql``, ``dynamodb``), and :class:`awops.locks.Locks` imports only the one a
job's backend names.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from awops.errors import first_line

logger = logging.getLogger(__name__)

# Slots are compared as floats computed the same way everywhere; this absorbs rounding only.
SLOT_EPSILON = 1e-3


def default_owner() -> str:
    """Who holds a lock, for logs and the lock record: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Claim:
    """What a claim answers: a lease to run under, or why not (the reason names the holder
    where the backend knows it)."""

    lease: Lease | None
    reason: str = ""
    took_over: bool = False

    @property
    def acquired(self) -> bool:
        return self.lease is not None


class LockBackend(ABC):
    """One place where replicas agree on who runs a job, and which slots have been run.

    A backend keeps two facts per job, and each implementation states how it keeps them:

    * **mutual exclusion**: at most one replica holds a job's lock at any time, and the lock of
      a holder that died (killed, cut off) moves on within about ``lease_seconds``;
    * **the slot record**: the latest slot run, whether that run finished (``done``), who ran
      it and how many runs there were, written only while the lock is held.

    A run without a slot (``run-once``) takes the lock and leaves the slot record alone.
    """

    @abstractmethod
    def claim(self, job: str, slot: float | None, should_stop: Callable[[], bool]) -> Claim:
        """Take ``job``'s lock, and with a ``slot`` the slot, or say why not.

        You have to take the lock with one atomic operation of the backend (a lock function, a
        conditional write), never a read followed by a write, so two replicas claiming at once
        cannot both win. Then, with a slot:

        * a slot already run and ``done`` is refused with the reason ``already run for this
          slot by <holder>``, so a replica firing late for the same slot skips it;
        * a record left ``done = false`` means its holder stopped mid-run: claim it anyway
          with ``took_over = True``, so the work moves instead of being lost;
        * otherwise record the slot as started (``done = false``) by this owner.

        A lock held by a live replica is refused (``lease`` None) with a reason that names the
        backend. A backend that may have to wait to decide calls ``should_stop`` and refuses
        once it is true. An unreachable backend raises :class:`BackendUnavailable`: the run
        is then an error, never a skip.
        """


class Lease(ABC):
    """A held lock, kept alive by a heartbeat thread until :meth:`release`.

    ``lost`` is set (and the ``on_lost`` callbacks are called, which cancel the run) when the
    lock may have passed to someone else. A backend implements :meth:`_heartbeat` and
    :meth:`_release`, and :meth:`_still_ours_after_failure` when it can still be sure after a
    failed heartbeat.
    """

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
            logger.warning("releasing the lock of %s failed: %s", self.job, first_line(exc))

    def _heartbeat_loop(self) -> None:
        while not self._released.wait(self.heartbeat_seconds):
            try:
                alive = self._heartbeat()
            except Exception as exc:
                logger.warning("lock heartbeat of %s failed: %s", self.job, first_line(exc))
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

    @abstractmethod
    def _heartbeat(self) -> bool:
        """Keep the lock alive and prove it is still ours: False once it is not.

        Called every ``heartbeat_seconds`` (about a third of the lease period) from the lease's
        own thread. Raise when the backend cannot be reached; :meth:`_still_ours_after_failure`
        then decides.
        """

    def _still_ours_after_failure(self) -> bool:
        """After a failed heartbeat: whether the lock is certainly still held. By default
        no, so the run stops rather than risk running beside the lock's next holder."""
        return False

    @abstractmethod
    def _release(self) -> None:
        """Mark the slot ``done`` (when there is one and the lock was not lost) and let go.

        You have to make the ``done`` write conditional on still holding the lock, so a
        holder that lost it cannot overwrite the record of the replica that took over.
        """


def slot_text(slot: float) -> str:
    """A slot as UTC ISO 8601 with milliseconds, for logs."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(slot)) + f".{int(slot % 1 * 1000):03d}Z"

"""What a job run is handed: its options, the shared resources, a clock and a stop signal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from awops.config import Config
from awops.errors import JobInterrupted
from awops.metrics import MetricsBase
from awops.pool_stats import PoolTotals

if TYPE_CHECKING:
    from awops.aws import AwsClients
    from awops.pg import PgConnector

logger = logging.getLogger(__name__)


class Readiness:
    """Which backends have answered at least once; ``/readyz`` waits for all configured ones."""

    def __init__(self) -> None:
        self._reached: set[str] = set()
        self._lock = threading.Lock()

    def mark(self, backend: str) -> None:
        with self._lock:
            self._reached.add(backend)

    def reached(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._reached)


class Resources:
    """Long-lived clients shared by every run: the PostgreSQL pool and the AWS clients.

    Created lazily, so a run of a PostgreSQL job never imports boto3. ``pool_totals`` sums
    psycopg_pool's counters over the pools opened; the daemon shares one across reloads.
    """

    def __init__(
        self,
        config: Config,
        readiness: Readiness | None = None,
        pool_totals: PoolTotals | None = None,
    ) -> None:
        self.config = config
        self.readiness = readiness if readiness is not None else Readiness()
        self.pool_totals = pool_totals if pool_totals is not None else PoolTotals()
        self._pg: PgConnector | None = None
        self._aws: AwsClients | None = None
        self._lock = threading.Lock()
        # What a job keeps from one run to the next in this process, by job name: e.g. the
        # server counters pg-health compares with its previous reading.
        self.job_memory: dict[str, dict[str, Any]] = {}

    @property
    def pg(self) -> PgConnector:
        with self._lock:
            if self._pg is None:
                # psycopg and its pool are loaded when a job first asks for PostgreSQL.
                from awops.pg import PgConnector

                self._pg = PgConnector(
                    self.config.postgresql,
                    on_reached=lambda: self.readiness.mark("postgresql"),
                    pool_totals=self.pool_totals,
                )
            return self._pg

    @property
    def aws(self) -> AwsClients:
        with self._lock:
            if self._aws is None:
                # The AWS glue only when a job first asks for AWS (boto3 comes later still).
                from awops.aws import AwsClients

                self._aws = AwsClients(
                    self.config.dynamodb, lambda: self.readiness.mark("dynamodb")
                )
            return self._aws

    def close(self, timeout_seconds: float = 5.0) -> None:
        with self._lock:
            pg, self._pg = self._pg, None
            self._aws = None
        if pg is not None:
            pg.close(timeout_seconds)


class ActiveRuns:
    """The runs in progress in this process, whichever runner started them, and the stop request.

    The daemon hands one to every runner it builds, so a run started before a reload (by the
    runner the reload replaced) is stopped like any other. :meth:`request_stop` only sets
    attributes, no lock, so a signal handler may call it; each runner, while it waits for its
    run, passes the request on to the run's context and, at the stop deadline, cancels it.
    """

    def __init__(self) -> None:
        self.stop_requested = False
        # time.monotonic() after which runs still going are cancelled; None: never
        self.cancel_deadline: float | None = None
        self._contexts: dict[str, JobContext] = {}
        self._changed = threading.Condition()

    def request_stop(self, cancel_after_seconds: float | None = None) -> None:
        """Runs wind up at their next safe point; after ``cancel_after_seconds`` (if given)
        those still going are cancelled. A later, earlier deadline wins."""
        if cancel_after_seconds is not None:
            deadline = time.monotonic() + cancel_after_seconds
            if self.cancel_deadline is None or deadline < self.cancel_deadline:
                self.cancel_deadline = deadline
        self.stop_requested = True

    def stop_all(self, reason: str) -> None:
        """Pass the stop on to every run's context now. Takes locks: not in a signal handler."""
        with self._changed:
            contexts = list(self._contexts.values())
        for context in contexts:
            context.stop(reason)

    def add(self, context: JobContext) -> None:
        with self._changed:
            self._contexts[context.run_id] = context

    def discard(self, context: JobContext) -> None:
        with self._changed:
            self._contexts.pop(context.run_id, None)
            self._changed.notify_all()

    def job_names(self) -> list[str]:
        with self._changed:
            return [context.job_name for context in self._contexts.values()]

    def wait_until_idle(self, timeout_seconds: float) -> bool:
        """True once no run is in progress; False if some still are after the timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._contexts, timeout_seconds)


@dataclass
class JobContext:
    """One run's view of the world; how it learns it must stop is :meth:`should_stop`.

    :meth:`should_stop` is the one answer to "must this run stop?" (a stop, a cancel, a
    shutdown, the timeout): a loop that can wind up cleanly asks it at its safe points and
    reports what it did, a pause is ``should_stop(wait_seconds=...)``, and code that watches
    for a stop (a child process, a scan) is handed ``should_stop`` itself. Work that cannot
    give a partial result calls :meth:`raise_if_stopping`, the same answer raised as
    :class:`JobInterrupted`. ``stop_event`` is only for a library that waits on an Event; it
    is not set by the timeout, so it is no answer to the question. Blocking work (a query, a
    child process) registers with :meth:`on_cancel` how to interrupt it; the runner calls
    that on a timeout, a lost lease or when a shutdown's deadline passes.
    """

    job_name: str
    run_id: str
    config: Config
    options: Any
    dry_run: bool
    metrics: MetricsBase
    resources: Resources
    deadline: float  # time.monotonic() value after which the job should wind up
    stop_event: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.time
    # The process-wide stop request, read directly so a run sees it at its very next check.
    runs: ActiveRuns | None = None
    _cancel_callbacks: list[Callable[[], None]] = field(default_factory=list)
    _stop_reason: str = ""

    @property
    def pg(self) -> PgConnector:
        return self.resources.pg

    @property
    def aws(self) -> AwsClients:
        return self.resources.aws

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def should_stop(self, wait_seconds: float = 0.0) -> bool:
        """True once the run was asked to stop (shutdown, cancel) or its timeout has passed.

        With ``wait_seconds``, first waits up to that long for such a request: a pause that a
        stop cuts short.
        """
        if wait_seconds > 0 and not self._shutdown_requested():
            self.stop_event.wait(max(0.0, min(wait_seconds, self.seconds_left())))
        return self.stop_event.is_set() or self._shutdown_requested() or self.seconds_left() <= 0

    def raise_if_stopping(self) -> None:
        """Raise :class:`JobInterrupted`, saying why, when :meth:`should_stop` is true."""
        if self.should_stop():
            reason = self._stop_reason or (
                "shutdown requested" if self._shutdown_requested() else "its timeout_seconds passed"
            )
            raise JobInterrupted(f"{self.job_name} stopped: {reason}")

    def _shutdown_requested(self) -> bool:
        return self.runs is not None and self.runs.stop_requested

    def stop(self, reason: str) -> None:
        """Ask the run to wind up at its next safe point."""
        if not self._stop_reason:
            self._stop_reason = reason
        self.stop_event.set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Register how to interrupt blocking work (cancel a query, kill a subprocess)."""
        self._cancel_callbacks.append(callback)

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the run now: its cancel callbacks kill its children and cancel its queries."""
        self.stop(reason)
        for callback in list(self._cancel_callbacks):
            try:
                callback()
            except Exception:
                logger.warning(
                    "cancelling %s: a cancel callback failed", self.job_name, exc_info=True
                )

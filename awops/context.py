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

    Created lazily, so a run of a PostgreSQL job never imports boto3.
    """

    def __init__(self, config: Config, readiness: Readiness | None = None) -> None:
        self.config = config
        self.readiness = readiness if readiness is not None else Readiness()
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
                from awops.pg import PgConnector

                self._pg = PgConnector(
                    self.config.postgresql, on_reached=lambda: self.readiness.mark("postgresql")
                )
            return self._pg

    @property
    def aws(self) -> AwsClients:
        with self._lock:
            if self._aws is None:
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


@dataclass
class JobContext:
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
    _cancel_callbacks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def pg(self) -> PgConnector:
        return self.resources.pg

    @property
    def aws(self) -> AwsClients:
        return self.resources.aws

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def should_stop(self) -> bool:
        """True once shutdown was requested or the run's timeout has passed."""
        return self.stop_event.is_set() or self.seconds_left() <= 0

    def raise_if_stopping(self) -> None:
        if self.stop_event.is_set():
            raise JobInterrupted(f"{self.job_name} stopped: shutdown requested")

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Register how to interrupt blocking work (cancel a query, kill a subprocess)."""
        self._cancel_callbacks.append(callback)

    def cancel(self) -> None:
        self.stop_event.set()
        for callback in list(self._cancel_callbacks):
            try:
                callback()
            except Exception:
                logger.warning(
                    "cancelling %s: a cancel callback failed", self.job_name, exc_info=True
                )

"""Runs jobs: selection, skipping, timeouts, error scrubbing, metrics and logging context.

Both ``awops run-once`` and the daemon go through :meth:`JobRunner.run`, so a job behaves the
same whether cron or the scheduler started it.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from awops.abc import Job
from awops.config import Config
from awops.context import ActiveRuns, JobContext, Resources
from awops.errors import BackendUnavailable
from awops.logs import SecretScrubber, job_log_context
from awops.metrics import MetricsBase, catalogue
from awops.registry import JobRegistry
from awops.result import JobResult, Outcome, Status

if TYPE_CHECKING:
    from awops.locks import Lease, Locks

logger = logging.getLogger(__name__)

# After a timeout the job is told to stop and gets this long to wind up before it is abandoned.
CANCEL_GRACE_SECONDS = 10.0
# When a shutdown's deadline passes, a run is cancelled (its children killed, its queries
# cancelled) and gets this long to clean up (drop a scratch database) before it is abandoned.
STOP_CANCEL_GRACE_SECONDS = 5.0
# How often a runner waiting for its run looks for a stop request.
_STOP_POLL_SECONDS = 0.2


class RunObserver(Protocol):
    """Told when a run starts and ends (notifications); must not raise, but may."""

    def run_started(self, job: str, run_id: str, dry_run: bool) -> None: ...

    def run_finished(self, result: JobResult, dry_run: bool) -> None: ...


def default_observers(config: Config) -> list[RunObserver]:
    """The notifier when pings or a webhook are configured; imported only then."""
    if not config.notifications.failure_webhook_url and not any(
        job.ping_url for job in config.jobs.values()
    ):
        return []
    from awops.notify import Notifier

    notifier = Notifier.from_config(config)
    return [notifier] if notifier is not None else []


def select_jobs(
    config: Config, registry: JobRegistry, names: Iterable[str], run_all: bool
) -> list[str]:
    """``names`` in order without repeats, then with ``run_all`` every other active job.

    Raises :class:`RegistryError` for an unknown name. ``run-once`` selects before it builds
    its runner, since what it selects decides whether the runner takes the job lock.
    """
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        registry.get(name)
    if run_all:
        for job_class in registry:
            if job_class.name not in chosen and config.job_is_active(
                job_class.name, job_class.backend
            ):
                chosen.append(job_class.name)
    return chosen


class JobRunner:
    def __init__(
        self,
        config: Config,
        registry: JobRegistry,
        metrics: MetricsBase,
        resources: Resources,
        clock: Callable[[], float] = time.time,
        cancel_grace_seconds: float = CANCEL_GRACE_SECONDS,
        observers: Sequence[RunObserver] | None = None,
        locks: Locks | None = None,
        runs: ActiveRuns | None = None,
        stop_grace_seconds: float = STOP_CANCEL_GRACE_SECONDS,
    ) -> None:
        self.config = config
        # Shared by every runner of a daemon, so one stop request reaches runs of old runners.
        self.runs = runs if runs is not None else ActiveRuns()
        self.stop_grace_seconds = stop_grace_seconds
        # None: no locking (tests, embedding); awops.wiring.new_runner passes one from [lock].
        self.locks = locks
        self.observers = list(default_observers(config) if observers is None else observers)
        self.registry = registry
        self.metrics = metrics
        self.resources = resources
        self.clock = clock
        self.cancel_grace_seconds = cancel_grace_seconds
        self.scrubber = SecretScrubber(config.secrets())
        self._active: dict[str, JobContext] = {}
        self._lock = threading.Lock()

    def select(self, names: Iterable[str], run_all: bool) -> list[str]:
        """Jobs to run, in order; raises :class:`RegistryError` for an unknown name."""
        return select_jobs(self.config, self.registry, names, run_all)

    def is_active(self, name: str) -> bool:
        return self.config.job_is_active(name, self.registry.get(name).backend)

    def run(self, name: str, *, dry_run: bool = False, slot: float | None = None) -> JobResult:
        """Run ``name`` now; ``slot`` is the scheduled fire time a daemon run is for.

        With locks, a run first claims the job's lock (and, with a slot, the slot): a replica
        that does not get it records ``skipped``. Dry runs change nothing and take no lock.
        """
        job_class = self.registry.get(name)
        job_config = self.config.jobs[name]
        # os.urandom is what secrets.token_hex reads; secrets would import hashlib at start-up.
        run_id = os.urandom(4).hex()
        started = time.monotonic()
        with job_log_context(name, run_id):
            skip = self._skip_reason(name)
            lease: Lease | None = None
            if skip is not None:
                blocked: Outcome | None = Outcome.skipped(skip)
            else:
                blocked, lease = self._claim(job_class, slot, dry_run)
            if blocked is not None:
                outcome = blocked
            else:
                context = JobContext(
                    job_name=name,
                    run_id=run_id,
                    config=self.config,
                    options=job_config.options,
                    dry_run=dry_run,
                    metrics=self.metrics,
                    resources=self.resources,
                    deadline=started + job_config.timeout_seconds,
                    clock=self.clock,
                    runs=self.runs,
                )
                logger.info("starting%s", " (dry run)" if dry_run else "")
                self._tell_observers("run_started", name, run_id, dry_run)
                if lease is not None:
                    lease.on_lost(context.cancel)
                outcome = self._run_with_timeout(
                    job_class(context).run,
                    context,
                    job_config.timeout_seconds,
                    # Released when the job's thread ends, even an abandoned one, so another
                    # replica never starts while this one is still at work.
                    on_thread_end=lease.release if lease is not None else None,
                )
            result = JobResult(
                job=name,
                status=outcome.status,
                summary=self.scrubber.scrub(outcome.summary),
                details=self.scrubber.scrub_value(outcome.details),
                duration_seconds=time.monotonic() - started,
                run_id=run_id,
            )
            self.metrics.record_run(result, self.clock())
            self._tell_observers("run_finished", result, dry_run)
            log = logger.info if result.status in (Status.OK, Status.SKIPPED) else logger.warning
            log("finished: %s in %.2fs: %s", result.status, result.duration_seconds, result.summary)
        return result

    def _tell_observers(self, event: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:  # a notification never fails the job
                logger.warning("run observer %s failed", type(observer).__name__, exc_info=True)

    def _claim(
        self, job_class: type[Job[Any]], slot: float | None, dry_run: bool
    ) -> tuple[Outcome | None, Lease | None]:
        """(outcome, None): do not run; (None, lease): run under it; (None, None): no locking."""
        if self.locks is None or dry_run:
            return None, None
        name = job_class.name
        try:
            claim = self.locks.claim(
                name,
                job_class.backend,
                slot,
                lambda: self.runs.stop_requested,
                job_class.changes_data,
            )
        except BackendUnavailable as exc:
            return Outcome.error(self.scrubber.scrub(str(exc)), lock="unavailable"), None
        if claim is None:
            return None, None
        if claim.lease is None:
            self.metrics.series(catalogue.JOB_LOCK_SKIPPED).labels(job=name).inc()
            return Outcome.skipped(claim.reason, lock="held"), None
        if claim.took_over:
            self.metrics.series(catalogue.JOB_LOCK_TAKEOVERS).labels(job=name).inc()
        return None, claim.lease

    def _skip_reason(self, name: str) -> str | None:
        backend = self.registry.get(name).backend
        if backend not in self.config.backends:
            configured = ", ".join(sorted(self.config.backends))
            origin = self.config.backends_origin
            return f"backend {backend} is not configured (backends: {configured}; {origin})"
        if not self.config.jobs[name].enabled:
            return f"disabled (set jobs.{name}.enabled = true to run it)"
        if self.runs.stop_requested:
            return "not started: shutdown in progress"
        return None

    def _run_with_timeout(
        self,
        work: Callable[[], Outcome],
        context: JobContext,
        timeout_seconds: float,
        on_thread_end: Callable[[], None] | None = None,
    ) -> Outcome:
        """Run ``work`` in a thread so a hung job cannot block its later runs forever."""
        box: list[Outcome] = []
        run_in_context = contextvars.copy_context().run

        def target() -> None:
            try:
                box.append(run_in_context(work))
            finally:
                if on_thread_end is not None:
                    run_in_context(on_thread_end)

        thread = threading.Thread(
            target=target,
            name=f"awops-{context.job_name}-{context.run_id}",
            daemon=True,  # one that does not stop when cancelled never holds the process up
        )
        with self._lock:
            self._active[context.run_id] = context
        self.runs.add(context)
        try:
            thread.start()
            ended_by = self._wait(thread, context, time.monotonic() + timeout_seconds)
            if ended_by == "timeout":
                logger.error("timed out after %.0fs; cancelling", timeout_seconds)
                context.cancel(f"timed out after {timeout_seconds:g} s (timeout_seconds)")
                thread.join(self.cancel_grace_seconds)
                if thread.is_alive():
                    logger.error("did not stop after cancel; abandoning its thread")
                return Outcome.error(
                    f"timed out after {timeout_seconds:g} s (timeout_seconds)",
                    timed_out=True,
                )
            if ended_by == "shutdown":
                logger.warning("still running at the shutdown deadline; cancelling")
                context.cancel("shutdown requested; cancelled at the shutdown deadline")
                thread.join(self.stop_grace_seconds)
                if thread.is_alive():
                    logger.error("did not stop after cancel; abandoning its thread")
                    return Outcome.error(
                        "stopped: still running at the shutdown deadline "
                        "(shutdown_timeout_seconds) and after cancelling; abandoned",
                        stopped=True,
                    )
        finally:
            with self._lock:
                self._active.pop(context.run_id, None)
            self.runs.discard(context)
        if not box:
            return Outcome.error("the job's thread ended without a result")
        return box[0]

    def _wait(self, thread: threading.Thread, context: JobContext, deadline: float) -> str:
        """Wait for the job's thread; passes a stop request on to its context.

        Returns what ended the wait: ``"done"``, ``"timeout"`` (``deadline`` passed) or
        ``"shutdown"`` (the stop request's cancel deadline passed).
        """
        while True:
            if self.runs.stop_requested and not context.stop_event.is_set():
                logger.info("shutdown requested; asking the job to wind up")
                context.stop("shutdown requested")
            now = time.monotonic()
            cancel_deadline = self.runs.cancel_deadline
            if now >= deadline:
                return "timeout"
            if cancel_deadline is not None and now >= cancel_deadline:
                return "shutdown"
            limit = deadline if cancel_deadline is None else min(deadline, cancel_deadline)
            thread.join(min(limit - now, _STOP_POLL_SECONDS))
            if not thread.is_alive():
                return "done"

    def request_stop(self, cancel_after_seconds: float | None = None) -> None:
        """Ask running jobs to stop at their next safe point and start no new ones; after
        ``cancel_after_seconds`` (if given) cancel those still running. Safe in a signal
        handler; reaches the runs of every runner sharing this one's :class:`ActiveRuns`."""
        self.runs.request_stop(cancel_after_seconds)

    def active_jobs(self) -> list[str]:
        with self._lock:
            return [context.job_name for context in self._active.values()]

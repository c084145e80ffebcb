"""Runs jobs: selection, skipping, timeouts, error scrubbing, metrics and logging context.

Both ``awops run-once`` and the daemon go through :meth:`JobRunner.run`, so a job behaves the
same whether cron or the scheduler started it.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable

from awops.config import Config
from awops.context import JobContext, Resources
from awops.logs import SecretScrubber, job_log_context
from awops.metrics import MetricsBase
from awops.registry import JobRegistry
from awops.result import JobResult, Outcome, Status

logger = logging.getLogger(__name__)

# After a timeout the job is told to stop and gets this long to wind up before it is abandoned.
CANCEL_GRACE_SECONDS = 10.0


class JobRunner:
    def __init__(
        self,
        config: Config,
        registry: JobRegistry,
        metrics: MetricsBase,
        resources: Resources,
        clock: Callable[[], float] = time.time,
        cancel_grace_seconds: float = CANCEL_GRACE_SECONDS,
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.resources = resources
        self.clock = clock
        self.cancel_grace_seconds = cancel_grace_seconds
        self.scrubber = SecretScrubber(config.secrets())
        self._active: dict[str, JobContext] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def select(self, names: Iterable[str], run_all: bool) -> list[str]:
        """Jobs to run, in order; raises :class:`RegistryError` for an unknown name."""
        chosen = list(dict.fromkeys(names))
        for name in chosen:
            self.registry.get(name)
        if run_all:
            for job_class in self.registry:
                if job_class.name not in chosen and self.is_active(job_class.name):
                    chosen.append(job_class.name)
        return chosen

    def is_active(self, name: str) -> bool:
        return self.config.job_is_active(name, self.registry.get(name).backend)

    def run(self, name: str, *, dry_run: bool = False) -> JobResult:
        job_class = self.registry.get(name)
        job_config = self.config.jobs[name]
        run_id = secrets.token_hex(4)
        started = time.monotonic()
        with job_log_context(name, run_id):
            skip = self._skip_reason(name)
            if skip is not None:
                outcome = Outcome.skipped(skip)
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
                )
                logger.info("starting%s", " (dry run)" if dry_run else "")
                outcome = self._run_with_timeout(
                    job_class(context).run, context, job_config.timeout_seconds
                )
            result = JobResult(
                job=name,
                status=outcome.status,
                summary=self.scrubber.scrub(outcome.summary),
                details=outcome.details,
                duration_seconds=time.monotonic() - started,
                run_id=run_id,
            )
            self.metrics.record_run(result, self.clock())
            log = logger.info if result.status in (Status.OK, Status.SKIPPED) else logger.warning
            log("finished: %s in %.2fs: %s", result.status, result.duration_seconds, result.summary)
        return result

    def _skip_reason(self, name: str) -> str | None:
        backend = self.registry.get(name).backend
        if backend not in self.config.backends:
            configured = ", ".join(sorted(self.config.backends))
            return f"backend {backend} is not configured (backends: {configured})"
        if not self.config.jobs[name].enabled:
            return f"disabled (set jobs.{name}.enabled = true to run it)"
        if self._stopping.is_set():
            return "not started: shutdown in progress"
        return None

    def _run_with_timeout(
        self, work: Callable[[], Outcome], context: JobContext, timeout_seconds: float
    ) -> Outcome:
        """Run ``work`` in a thread so a hung job cannot block its later runs forever."""
        box: list[Outcome] = []
        run_in_context = contextvars.copy_context().run
        thread = threading.Thread(
            target=lambda: box.append(run_in_context(work)),
            name=f"awops-{context.job_name}-{context.run_id}",
            daemon=True,
        )
        with self._lock:
            self._active[context.run_id] = context
        if self._stopping.is_set():
            context.stop_event.set()
        try:
            thread.start()
            thread.join(timeout_seconds)
            if thread.is_alive():
                logger.error("timed out after %.0fs; cancelling", timeout_seconds)
                context.cancel()
                thread.join(self.cancel_grace_seconds)
                if thread.is_alive():
                    logger.error("did not stop after cancel; abandoning its thread")
                return Outcome.error(
                    f"timed out after {timeout_seconds:g} s (timeout_seconds)",
                    timed_out=True,
                )
        finally:
            with self._lock:
                self._active.pop(context.run_id, None)
        if not box:
            return Outcome.error("the job's thread ended without a result")
        return box[0]

    def request_stop(self) -> None:
        """Ask running jobs to stop at their next safe point; start no new ones."""
        self._stopping.set()
        with self._lock:
            contexts = list(self._active.values())
        for context in contexts:
            context.stop_event.set()

    def active_jobs(self) -> list[str]:
        with self._lock:
            return [context.job_name for context in self._active.values()]

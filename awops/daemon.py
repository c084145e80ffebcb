"""``awops run``: schedule every active job, serve metrics, stop cleanly, reload on SIGHUP.

The main thread only waits for signals and does the reload and shutdown work; jobs run in the
scheduler's worker threads, each inside :meth:`JobRunner.run` with its own timeout.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from awops.config import Config, load_config
from awops.context import Readiness, Resources
from awops.errors import AwopsError, ConfigError
from awops.locks import Locks, schedule_slot
from awops.logs import scrubber, setup_logging
from awops.metrics import Metrics
from awops.metrics.http import MetricsServer, WebConfig, load_web_config, raise_open_files_limit
from awops.metrics.push import record_schedule_periods
from awops.registry import JobRegistry
from awops.runner import JobRunner
from awops.systemd import SystemdNotifier
from awops.triggers import UTC, build_trigger, misfire_grace_seconds

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
# /healthz fails when the scheduler has not fired its heartbeat for this long.
HEARTBEAT_STALE_SECONDS = 30.0
_HEARTBEAT_JOB_ID = "awops-heartbeat"


class Daemon:
    def __init__(
        self,
        config: Config,
        registry: JobRegistry,
        config_path: Path | None,
        environ: Mapping[str, str],
        metrics: Metrics | None = None,
        on_heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.config_path = config_path
        self.environ = environ
        self.metrics = metrics if metrics is not None else Metrics()
        self.readiness = Readiness()
        self.resources = Resources(config, self.readiness)
        self.runner = self._new_runner(config, self.resources)
        self.on_heartbeat = on_heartbeat
        self.systemd = SystemdNotifier(environ)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._last_heartbeat = time.monotonic()
        self._scheduler: Any = None
        self._server: MetricsServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        web_config: WebConfig | None = None
        if self.config.metrics.web_config_file:
            web_config = load_web_config(self.config.metrics.web_config_file)
        # Before any pool or socket exists; the server keeps a reserve of what this allows.
        raise_open_files_limit()
        # ListenError (address in use, not local) propagates: nothing has started yet.
        self._server = MetricsServer(
            self.config.metrics.addr,
            self.metrics.registry,
            self._healthz,
            self._readyz,
            web_config=web_config,
        )
        self._server.start()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(self.config.jobs) + 2)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._schedule_jobs()
        self._scheduler.start()
        threading.Thread(target=self._probe_backends, name="awops-probe", daemon=True).start()
        logger.info(
            "awops daemon started: %d jobs scheduled, backends %s",
            len(self._scheduled_names()),
            ", ".join(sorted(self.config.backends)),
        )
        # Config loaded and /metrics serving: what Type=notify waits for.
        self.systemd.ready(f"{len(self._scheduled_names())} jobs scheduled")
        try:
            while not self._stop.wait(1.0):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
        finally:
            self._shutdown()
        return 0

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_stop(signum: int, frame: FrameType | None) -> None:
            logger.info("received %s; stopping", signal.Signals(signum).name)
            self.request_stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            logger.info("received SIGHUP; reloading configuration")
            self.request_reload()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _shutdown(self) -> None:
        timeout = self.config.daemon.shutdown_timeout_seconds
        logger.info("shutting down: waiting up to %.0fs for running jobs", timeout)
        self.systemd.stopping()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self.runner.request_stop()
        deadline = time.monotonic() + timeout
        while self.runner.active_jobs() and time.monotonic() < deadline:
            time.sleep(0.1)
        still_running = self.runner.active_jobs()
        if still_running:
            logger.warning("shutdown timeout passed; leaving %s", ", ".join(still_running))
        self.resources.close(timeout_seconds=2.0)
        if self._server is not None:
            self._server.stop()
        logger.info("awops daemon stopped")

    # -- scheduling --------------------------------------------------------------------------

    def _new_runner(self, config: Config, resources: Resources) -> JobRunner:
        scrubber.update(config.secrets())
        locks = Locks(
            config.lock, lambda: resources.pg, lambda: resources.aws, config.dynamodb.prefix
        )
        runner = JobRunner(config, self.registry, self.metrics, resources, locks=locks)
        for name in config.jobs:
            if runner.is_active(name):
                self.metrics.declare_job(name)
        active = [name for name in config.jobs if runner.is_active(name)]
        record_schedule_periods(self.metrics, config, active)
        return runner

    def _schedule_jobs(self) -> None:
        scheduler = self._scheduler
        scheduler.remove_all_jobs()
        scheduler.add_job(
            self._heartbeat,
            "interval",
            seconds=HEARTBEAT_SECONDS,
            id=_HEARTBEAT_JOB_ID,
            misfire_grace_time=int(HEARTBEAT_SECONDS),
        )
        for name, job_config in self.config.jobs.items():
            if not self.runner.is_active(name):
                continue
            scheduler.add_job(
                self._run_scheduled,
                trigger=build_trigger(job_config.schedule, job_config.jitter_seconds),
                args=[name],
                id=name,
                name=name,
                misfire_grace_time=misfire_grace_seconds(job_config.schedule),
            )

    def _scheduled_names(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs() if job.id != _HEARTBEAT_JOB_ID]

    def _run_scheduled(self, name: str) -> None:
        # The runner never raises by design; this guard keeps a bug from reaching APScheduler.
        try:
            # Every replica computes the same slot, so only one of them runs it.
            slot = schedule_slot(self.config.jobs[name].schedule, time.time())
            self.runner.run(name, slot=slot)
        except Exception:
            logger.exception("internal error running %s", name)

    def _heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()
        self.systemd.watchdog()
        self.on_heartbeat()

    def reload(self) -> None:
        """Apply a new configuration; an invalid one keeps the running one."""
        try:
            new_config = load_config(self.config_path, self.registry, self.environ)
        except ConfigError as exc:
            logger.error("reload rejected, keeping the running configuration: %s", exc)
            return
        old_resources = self.resources
        if (new_config.postgresql, new_config.dynamodb) != (
            self.config.postgresql,
            self.config.dynamodb,
        ):
            self.resources = Resources(new_config, self.readiness)
            threading.Thread(
                target=self._close_when_idle,
                args=(self.runner, old_resources),
                name="awops-close-old",
                daemon=True,
            ).start()
        if new_config.metrics.addr != self.config.metrics.addr:
            logger.warning("metrics.addr changed; it takes effect after a restart")
        setup_logging(new_config.logging.format, new_config.logging.level)
        self.config = new_config
        self.runner = self._new_runner(new_config, self.resources)
        self._schedule_jobs()
        logger.info("configuration reloaded: %d jobs scheduled", len(self._scheduled_names()))

    @staticmethod
    def _close_when_idle(runner: JobRunner, resources: Resources) -> None:
        while runner.active_jobs():
            time.sleep(0.5)
        resources.close()

    # -- probes ------------------------------------------------------------------------------

    def _probe_backends(self) -> None:
        """Reach each configured backend once, so /readyz does not wait for a job's schedule."""
        delay = 1.0
        while not self._stop.is_set():
            missing = self.config.backends - self.readiness.reached()
            if not missing:
                return
            for backend in sorted(missing):
                try:
                    self._probe(backend)
                    self.readiness.mark(backend)
                    logger.info("%s reached", backend)
                except AwopsError as exc:
                    logger.warning("%s not reachable yet: %s", backend, exc)
                except Exception as exc:
                    logger.warning("%s not reachable yet: %s", backend, scrubber.scrub(str(exc)))
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _probe(self, backend: str) -> None:
        if backend == "postgresql":
            with self.resources.pg.connection() as conn:
                conn.execute("SELECT 1")
        elif backend == "dynamodb":
            self.resources.aws.dynamodb().list_tables(Limit=1)

    def _healthz(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self._last_heartbeat
        running = self._scheduler is not None and self._scheduler.running
        ok = running and age < HEARTBEAT_STALE_SECONDS
        return ok, {"scheduler_running": running, "heartbeat_age_seconds": round(age, 1)}

    def _readyz(self) -> tuple[bool, dict[str, Any]]:
        reached = self.readiness.reached()
        missing = sorted(self.config.backends - reached)
        return not missing, {"config": self.config.source, "backends_unreached": missing}

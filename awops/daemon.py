"""``awops run``: schedule every active job, serve metrics, stop cleanly, reload on SIGHUP.

The main thread only waits for signals and does the reload and shutdown work; jobs run in the
scheduler's worker threads, each inside :meth:`JobRunner.run` with its own timeout.

Shutdown is bounded: every run, whichever runner (configuration) started it, is asked to wind
up; at ``shutdown_timeout_seconds`` those still going are cancelled (child processes killed,
queries cancelled) and get :data:`~awops.runner.STOP_CANCEL_GRACE_SECONDS` to clean up; then
the daemon exits, abandoning a thread that is stuck (job threads are daemon threads).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import select
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
from awops.context import ActiveRuns, Readiness, Resources
from awops.errors import AwopsError, ConfigError
from awops.logs import scrubber, setup_logging
from awops.metrics import Metrics
from awops.metrics.http import MetricsServer, WebConfig, load_web_config, raise_open_files_limit
from awops.metrics.pg_pool import PgPoolCollector
from awops.metrics.push import record_schedule_periods
from awops.registry import JobRegistry
from awops.runner import STOP_CANCEL_GRACE_SECONDS, JobRunner
from awops.schedule import schedule_slot
from awops.status import (
    DaemonView,
    StatusBoard,
    daemon_view,
    start_backup_scan,
    status_routes,
)
from awops.systemd import SystemdNotifier
from awops.triggers import UTC, build_trigger, misfire_grace_seconds
from awops.wiring import new_runner

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
# /healthz fails when the scheduler has not fired its heartbeat for this long.
HEARTBEAT_STALE_SECONDS = 30.0
_HEARTBEAT_JOB_ID = "awops-heartbeat"
# The main thread wakes at once on a request, and at least this often.
_MAIN_LOOP_SECONDS = 1.0
# After shutdown the interpreter's own teardown gets this long before the process is ended.
EXIT_GRACE_SECONDS = 10.0

# What the scheduler runs: (job name, APScheduler trigger, misfire grace in seconds).
ScheduledJob = tuple[str, Any, int]


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
        # What / and /api/status show; every runner tells it of its runs.
        self.status = StatusBoard()
        self.readiness = Readiness()
        self.resources = Resources(config, self.readiness)
        # Read at every scrape; the totals are shared by the Resources of every reload.
        PgPoolCollector(self.resources.pool_totals, registry=self.metrics.registry)
        # Every runner shares it: runs a reload's old runner started stop like the others.
        self.runs = ActiveRuns()
        self.runner = self._new_runner(config, self.resources)
        self.on_heartbeat = on_heartbeat
        self.systemd = SystemdNotifier(environ)
        # Set by signal handlers: plain attributes and a byte down a pipe, which a handler can
        # do without taking a lock the main thread it interrupts might hold.
        self._stop_requested = False
        self._reload_requested = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._stop = threading.Event()  # set by the main thread once it shuts down
        self._last_heartbeat = time.monotonic()
        self._scheduler: Any = None
        self._server: MetricsServer | None = None
        self._plan: list[ScheduledJob] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve and schedule until stopped; :class:`ConfigError` when a job's schedule is one
        the scheduler refuses (before anything is started)."""
        plan = self._plan_jobs(self.config)
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
        for path, handler in status_routes(self.status, self._status_view):
            self._server.route(path, handler, auth=True)
        self._server.start()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(self.config.jobs) + 2)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._install_jobs(plan)
        self._scheduler.start()
        threading.Thread(target=self._probe_backends, name="awops-probe", daemon=True).start()
        start_backup_scan(self.config, self.resources, self.metrics, self.status)
        logger.info(
            "awops daemon started: %d jobs scheduled, backends %s",
            len(self._scheduled_names()),
            ", ".join(sorted(self.config.backends)),
        )
        # Config loaded and /metrics serving: what Type=notify waits for.
        self.systemd.ready(f"{len(self._scheduled_names())} jobs scheduled")
        try:
            while not self._stop_requested:
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
                select.select([self._wake_read], [], [], _MAIN_LOOP_SECONDS)
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 512)
        finally:
            self._shutdown()
            os.close(self._wake_read)
            os.close(self._wake_write)
            if threading.current_thread() is threading.main_thread():
                _exit_if_teardown_hangs(EXIT_GRACE_SECONDS)
        return 0

    def request_stop(self) -> None:
        """Stop the daemon (safe in a signal handler and from any thread)."""
        self._stop_requested = True
        self._wake()

    def request_reload(self) -> None:
        """Reload the configuration (safe in a signal handler and from any thread)."""
        self._reload_requested = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            os.write(self._wake_write, b"\0")

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
        running = self.runs.job_names()
        logger.info(
            "shutting down: running jobs (%s) get %.0fs to wind up, then are cancelled",
            ", ".join(running) or "none",
            timeout,
        )
        self._stop.set()
        self.systemd.stopping()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        # Every run of every runner: those of a runner a reload replaced included.
        self.runs.request_stop(cancel_after_seconds=timeout)
        self.runs.stop_all("shutdown requested")
        # Each run's runner cancels it at the deadline and abandons it after a grace.
        if not self.runs.wait_until_idle(timeout + STOP_CANCEL_GRACE_SECONDS + 1.0):
            still_running = ", ".join(self.runs.job_names())
            logger.warning("leaving %s: still running after cancel", still_running)
        self.resources.close(timeout_seconds=2.0)
        if self._server is not None:
            self._server.stop()
        logger.info("awops daemon stopped")

    # -- scheduling --------------------------------------------------------------------------

    def _new_runner(self, config: Config, resources: Resources) -> JobRunner:
        runner = new_runner(config, self.registry, self.metrics, resources, runs=self.runs)
        for name in config.jobs:
            if runner.is_active(name):
                self.metrics.declare_job(name)
        active = [name for name in config.jobs if runner.is_active(name)]
        record_schedule_periods(self.metrics, config, active)
        runner.observers.append(self.status)
        return runner

    def _plan_jobs(self, config: Config) -> list[ScheduledJob]:
        """A trigger for every active job of ``config``, each asked for its next fire time, so
        a value the scheduler cannot take fails here, before the running schedule is touched.
        """
        now = dt.datetime.now(UTC)
        plan = []
        for name, job_config in config.jobs.items():
            if not config.job_is_active(name, self.registry.get(name).backend):
                continue
            try:
                trigger = build_trigger(job_config.schedule, job_config.jitter_seconds)
                trigger.get_next_fire_time(None, now)
            except (ValueError, ArithmeticError) as exc:
                raise ConfigError(
                    f"{config.source}: jobs.{name}.schedule",
                    f"a schedule and jitter_seconds the scheduler accepts ({exc})",
                    job_config.schedule.text,
                ) from None
            plan.append((name, trigger, misfire_grace_seconds(job_config.schedule)))
        return plan

    def _install_jobs(self, plan: list[ScheduledJob]) -> None:
        scheduler = self._scheduler
        scheduler.remove_all_jobs()
        scheduler.add_job(
            self._heartbeat,
            "interval",
            seconds=HEARTBEAT_SECONDS,
            id=_HEARTBEAT_JOB_ID,
            misfire_grace_time=int(HEARTBEAT_SECONDS),
        )
        for name, trigger, misfire_grace_seconds_ in plan:
            scheduler.add_job(
                self._run_scheduled,
                trigger=trigger,
                args=[name],
                id=name,
                name=name,
                misfire_grace_time=misfire_grace_seconds_,
            )
        self._plan = plan

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
        """Apply a new configuration. Whatever goes wrong, the running one is kept and the
        daemon lives on: a failed reload is logged, never raised."""
        try:
            self._apply(load_config(self.config_path, self.registry, self.environ))
        except ConfigError as exc:
            logger.error("reload rejected, keeping the running configuration: %s", exc)
        except Exception as exc:  # a bug must not take the running daemon down with it
            logger.exception(
                "reload failed, keeping the running configuration: %s: %s",
                type(exc).__name__,
                scrubber.scrub(str(exc)),
            )

    def _apply(self, new_config: Config) -> None:
        """Everything that can fail is done before the running state changes; installing the
        new schedule is undone if it fails."""
        plan = self._plan_jobs(new_config)
        old_config, old_resources, old_runner = self.config, self.resources, self.runner
        resources = old_resources
        if (new_config.postgresql, new_config.dynamodb) != (
            old_config.postgresql,
            old_config.dynamodb,
        ):
            # The pool is replaced; its counters carry on in the shared totals.
            resources = Resources(new_config, self.readiness, old_resources.pool_totals)
        try:
            runner = self._new_runner(new_config, resources)
            # Runs of the old configuration may still be at work and logging its secrets.
            scrubber.update([*old_config.secrets(), *new_config.secrets()])
            self.config, self.resources, self.runner = new_config, resources, runner
            old_plan = self._plan
            try:
                self._install_jobs(plan)
            except Exception:
                self._install_jobs(old_plan)
                raise
        except Exception:
            self.config, self.resources, self.runner = old_config, old_resources, old_runner
            scrubber.update(old_config.secrets())
            if resources is not old_resources:
                resources.close()
            raise
        if resources is not old_resources:
            threading.Thread(
                target=self._close_when_idle,
                args=(old_runner, old_resources),
                name="awops-close-old",
                daemon=True,
            ).start()
        if new_config.metrics.addr != old_config.metrics.addr:
            logger.warning("metrics.addr changed; it takes effect after a restart")
        setup_logging(new_config.logging.format, new_config.logging.level)
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

    def _status_view(self) -> DaemonView:
        scheduler = self._scheduler
        return daemon_view(self.config, scheduler.get_jobs() if scheduler is not None else [])

    def _healthz(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self._last_heartbeat
        running = self._scheduler is not None and self._scheduler.running
        ok = running and age < HEARTBEAT_STALE_SECONDS
        return ok, {"scheduler_running": running, "heartbeat_age_seconds": round(age, 1)}

    def _readyz(self) -> tuple[bool, dict[str, Any]]:
        reached = self.readiness.reached()
        missing = sorted(self.config.backends - reached)
        return not missing, {"config": self.config.source, "backends_unreached": missing}


def _exit_if_teardown_hangs(grace_seconds: float) -> None:
    """End the process should Python's teardown wait on a thread for more than the grace.

    Shutdown has already cancelled every run; this bounds what remains (a non-daemon thread of a
    library stuck in a call) so a SIGTERM always ends the process.
    """

    def exit_now() -> None:
        logger.error("still tearing down %.0fs after shutdown; exiting", grace_seconds)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(grace_seconds, exit_now)
    timer.daemon = True
    timer.start()

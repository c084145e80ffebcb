import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from awops.abc import Job
from awops.config import load_config
from awops.context import ActiveRuns, JobContext, Resources
from awops.errors import JobInterrupted
from awops.metrics import Metrics, NullMetrics
from awops.registry import JobRegistry
from awops.result import Outcome, Status
from awops.runner import JobRunner
from tests.fix_awops import wait_for

SECRET = "pw-that-must-not-leak"
released = threading.Event()


class Hangs(Job):
    name = "hangs"
    backend = "postgresql"
    description = "blocks until cancelled"
    default_schedule = "every 1s"
    default_timeout_seconds = 0.3

    def _run(self) -> Outcome:
        self.context.on_cancel(released.set)
        released.wait(30)
        return Outcome.ok("released")


class Leaks(Job):
    name = "leaks"
    backend = "postgresql"
    description = "raises with the password in its message"
    default_schedule = "every 1s"

    def _run(self) -> Outcome:
        raise RuntimeError(f"could not log in with password {SECRET}")


class Fine(Job):
    name = "fine"
    backend = "dynamodb"
    description = "ok"
    default_schedule = "every 1s"

    def _run(self) -> Outcome:
        return Outcome.ok("all good", figure=1)


class WindsUp(Job):
    """Loops until told to stop, then reports it: the way of work that can stop cleanly."""

    name = "winds-up"
    backend = "postgresql"
    description = "loops until should_stop()"
    default_schedule = "every 1s"

    def _run(self) -> Outcome:
        while not self.context.should_stop(wait_seconds=0.05):
            pass
        return Outcome.error("stopped at a safe point")


class Aborts(Job):
    """Work without a partial result: raise_if_stopping() ends it."""

    name = "aborts"
    backend = "postgresql"
    description = "loops until raise_if_stopping() raises"
    default_schedule = "every 1s"

    def _run(self) -> Outcome:
        while True:
            self.context.raise_if_stopping()
            time.sleep(0.02)


class WaitsForCancel(Job):
    """Blocked in work only a cancel interrupts (a child process, a query)."""

    name = "waits-for-cancel"
    backend = "postgresql"
    description = "blocks until its cancel callback runs"
    default_schedule = "every 1s"

    def _run(self) -> Outcome:
        cancelled = threading.Event()
        self.context.on_cancel(cancelled.set)
        cancelled.wait(120)
        return Outcome.error("interrupted by its cancel callback")


class Stuck(Job):
    """Ignores every request: its thread is abandoned."""

    name = "stuck"
    backend = "postgresql"
    description = "sleeps through stop and cancel"
    default_schedule = "every 1s"

    def _run(self) -> Outcome:
        time.sleep(120)
        return Outcome.ok("woke up")


def make_runner(
    env: dict[str, str], runs: ActiveRuns | None = None
) -> tuple[JobRunner, CollectorRegistry]:
    registry = JobRegistry()
    for job in (Hangs, Leaks, Fine, WindsUp, Aborts, WaitsForCancel, Stuck):
        registry.register(job)
    config = load_config(None, registry, env)
    prometheus = CollectorRegistry()
    runner = JobRunner(
        config,
        registry,
        Metrics(prometheus),
        Resources(config),
        cancel_grace_seconds=5,
        runs=runs,
        stop_grace_seconds=1,
    )
    return runner, prometheus


def run_in_thread(runner: JobRunner, name: str, results: dict[str, Any]) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.update({name: runner.run(name)}))
    thread.start()
    wait_for(lambda: name in runner.active_jobs(), what=f"{name} to start")
    return thread


def test_timeout_cancels_and_reports_error() -> None:
    runner, prometheus = make_runner({"DATABASE_BACKEND": "postgresql"})
    released.clear()
    started = time.monotonic()
    result = runner.run("hangs")
    assert result.status is Status.ERROR
    assert "timed out after 0.3 s" in result.summary
    assert released.is_set(), "the job's cancel callback was not called"
    assert time.monotonic() - started < 10
    assert (
        prometheus.get_sample_value("awops_job_runs_total", {"job": "hangs", "status": "error"})
        == 1
    )
    assert prometheus.get_sample_value("awops_job_healthy", {"job": "hangs"}) == 0


def test_secret_is_scrubbed_from_summary() -> None:
    runner, _ = make_runner({"DATABASE_BACKEND": "postgresql", "PG_DB_PASSWORD": SECRET})
    result = runner.run("leaks")
    assert result.status is Status.ERROR
    assert SECRET not in result.summary
    assert "********" in result.summary


def test_unconfigured_backend_is_skipped_and_not_counted_unhealthy() -> None:
    runner, prometheus = make_runner({"DATABASE_BACKEND": "postgresql"})
    result = runner.run("fine")
    assert result.status is Status.SKIPPED
    assert "backend dynamodb is not configured" in result.summary
    assert prometheus.get_sample_value("awops_job_healthy", {"job": "fine"}) is None


def test_ok_run_records_generic_metrics() -> None:
    runner, prometheus = make_runner({"DATABASE_BACKEND": "dynamodb"})
    result = runner.run("fine")
    assert result.status is Status.OK and result.details == {"figure": 1}
    labels = {"job": "fine"}
    assert prometheus.get_sample_value("awops_job_healthy", labels) == 1
    assert prometheus.get_sample_value("awops_job_last_success_timestamp_seconds", labels) > 0
    assert prometheus.get_sample_value("awops_job_duration_seconds_count", labels) == 1


def test_select_all_takes_active_jobs_only() -> None:
    runner, _ = make_runner({"DATABASE_BACKEND": "dynamodb"})
    assert runner.select([], run_all=True) == ["fine"]
    assert runner.select(["leaks"], run_all=True) == ["leaks", "fine"]


def test_one_wiring_decides_which_jobs_take_the_lock_for_the_daemon_and_run_once() -> None:
    from awops.daemon import Daemon
    from awops.locks import Locks
    from awops.registry import builtin_registry
    from awops.wiring import new_runner

    registry = builtin_registry()

    def wired(env: dict[str, str], jobs: list[str] | None) -> JobRunner:
        config = load_config(None, registry, env)
        resources = Resources(config)
        return new_runner(config, registry, Metrics(CollectorRegistry()), resources, jobs=jobs)

    pg = {"DATABASE_BACKEND": "postgresql"}
    # run-once: only what it selected counts; a read-only check runs unlocked.
    assert wired(pg, ["pg-health"]).locks is None
    assert isinstance(wired(pg, ["pg-health", "pg-ttl-purge"]).locks, Locks)
    assert isinstance(wired({**pg, "AWOPS_LOCK_SCOPE": "all"}, ["pg-health"]).locks, Locks)
    assert wired({**pg, "AWOPS_LOCK_BACKEND": "none"}, ["pg-ttl-purge"]).locks is None
    # The daemon may run any configured job, and builds its runner the same way.
    assert isinstance(wired(pg, None).locks, Locks)
    config = load_config(None, registry, pg)
    daemon = Daemon(config, registry, None, pg, metrics=Metrics(CollectorRegistry()))
    assert isinstance(daemon.runner.locks, Locks)
    assert daemon.runner.locks.settings is config.lock
    unlocked = load_config(None, registry, {**pg, "AWOPS_LOCK_BACKEND": "none"})
    assert Daemon(unlocked, registry, None, pg, Metrics(CollectorRegistry())).runner.locks is None


BOTH = {"AWOPS_BACKENDS": "postgresql,dynamodb"}  # nothing here connects to either


def test_one_stop_request_reaches_the_runs_of_every_runner_sharing_it() -> None:
    # The daemon's reload builds a new runner while the old one's runs go on.
    runs = ActiveRuns()
    old, _ = make_runner(BOTH, runs)
    new, _ = make_runner(BOTH, runs)
    results: dict[str, Any] = {}
    threads = [run_in_thread(old, name, results) for name in ("winds-up", "aborts")]
    new.request_stop()
    for thread in threads:
        thread.join(60)
    assert results["winds-up"].summary == "stopped at a safe point"
    assert results["aborts"].status is Status.ERROR
    assert results["aborts"].summary == "aborts stopped: shutdown requested"
    assert old.run("fine").summary == "not started: shutdown in progress"


def test_at_the_stop_deadline_a_run_is_cancelled_and_one_that_ignores_it_abandoned() -> None:
    runner, _ = make_runner(BOTH)
    results: dict[str, Any] = {}
    threads = [run_in_thread(runner, name, results) for name in ("waits-for-cancel", "stuck")]
    runner.request_stop(cancel_after_seconds=0.5)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "the runner did not give up on its run"
    assert results["waits-for-cancel"].summary == "interrupted by its cancel callback"
    stuck = results["stuck"]
    assert stuck.status is Status.ERROR
    assert "still running at the shutdown deadline" in stuck.summary
    assert stuck.details["stopped"] is True
    assert runner.active_jobs() == []


def make_context(runs: ActiveRuns | None = None, timeout_seconds: float = 60) -> JobContext:
    registry = JobRegistry()
    registry.register(Fine)
    config = load_config(None, registry, BOTH)
    return JobContext(
        job_name="fine",
        run_id="0",
        config=config,
        options=None,
        dry_run=False,
        metrics=NullMetrics(),
        resources=Resources(config),
        deadline=time.monotonic() + timeout_seconds,
        runs=runs,
    )


def test_should_stop_and_raise_if_stopping_answer_alike_whatever_stops_the_run() -> None:
    running = make_context()
    assert not running.should_stop()
    running.raise_if_stopping()  # no stop: nothing raised

    timed_out = make_context(timeout_seconds=0)
    runs = ActiveRuns()
    shutting_down = make_context(runs)
    runs.request_stop()
    cancelled = make_context()
    cancelled.cancel("the job's lock was lost")
    for context, reason in [
        (timed_out, "its timeout_seconds passed"),
        (shutting_down, "shutdown requested"),
        (cancelled, "the job's lock was lost"),
    ]:
        assert context.should_stop(), reason
        with pytest.raises(JobInterrupted, match=f"^fine stopped: {reason}$"):
            context.raise_if_stopping()


def test_should_stop_with_a_wait_is_a_pause_a_stop_cuts_short() -> None:
    context = make_context()
    threading.Timer(0.2, context.stop, ["shutdown requested"]).start()
    assert context.should_stop(wait_seconds=60)

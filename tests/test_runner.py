import threading
import time

from prometheus_client import CollectorRegistry

from awops.abc import Job
from awops.config import load_config
from awops.context import Resources
from awops.metrics import Metrics
from awops.registry import JobRegistry
from awops.result import Outcome, Status
from awops.runner import JobRunner

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


def make_runner(env: dict[str, str]) -> tuple[JobRunner, CollectorRegistry]:
    registry = JobRegistry()
    for job in (Hangs, Leaks, Fine):
        registry.register(job)
    config = load_config(None, registry, env)
    prometheus = CollectorRegistry()
    runner = JobRunner(
        config, registry, Metrics(prometheus), Resources(config), cancel_grace_seconds=5
    )
    return runner, prometheus


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

"""``run-once`` pushing to a real Pushgateway on loopback."""

import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from awops.config import load_config
from awops.metrics import Metrics
from awops.metrics.push import push_run_metrics
from awops.registry import builtin_registry
from awops.result import JobResult, Status
from tests.fix_awops import clean_environ, run_awops
from tests.fix_pg import PgDatabase, free_port

PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
pytestmark = pytest.mark.skipif(PUSHGATEWAY is None, reason="prometheus-pushgateway missing")


@dataclass
class Pushgateway:
    url: str

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, frozenset(labels.items())))

    def groups(self) -> set[frozenset[tuple[str, str]]]:
        return {
            labels for (name, labels), _ in self.samples().items() if name == "push_time_seconds"
        }


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    assert PUSHGATEWAY is not None
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="awops-pgw-"))
    process = subprocess.Popen(
        [
            PUSHGATEWAY,
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",  # Debian's build defaults to a file in /var/lib
            "--log.level=warn",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pushgateway did not start") from None
                time.sleep(0.1)
        yield Pushgateway(url)
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def test_run_once_pushes_job_series_under_their_job(
    aw_db: PgDatabase, pushgateway: Pushgateway
) -> None:
    env = aw_db.awops_env(AWOPS_PUSHGATEWAY_URL=pushgateway.url, AWOPS_DAEMON_INSTANCE="cron-1")
    result = run_awops("run-once", "pg-health", env=env)
    assert result.returncode == 0, result.stderr
    assert "pushed metrics to the Pushgateway (instance cron-1" in result.stderr
    job = {"job": "pg-health", "instance": "cron-1"}
    shared = {"job": "awops", "instance": "cron-1"}
    # The awops job name survives in the job label, as the daemon's scrape shows it.
    assert pushgateway.value("awops_job_healthy", **job) == 1
    assert pushgateway.value("awops_job_runs_total", status="ok", **job) == 1
    assert pushgateway.value("awops_job_duration_seconds_count", **job) == 1
    assert pushgateway.value("awops_job_last_success_timestamp_seconds", **job) > 0
    # The schedule the "no success in twice its schedule" alert compares with.
    assert pushgateway.value("awops_job_schedule_period_seconds", **job) == 60
    # Series without a job label go to the shared group.
    assert pushgateway.value("awops_pg_up", **shared) == 1
    assert pushgateway.value("awops_build_info", version=_version(), **shared) == 1
    assert pushgateway.groups() == {frozenset(job.items()), frozenset(shared.items())}
    assert aw_db.cluster.password not in result.stderr


def test_a_job_group_is_replaced_and_others_are_kept(pushgateway: Pushgateway) -> None:
    config = load_config(
        None,
        builtin_registry(),
        clean_environ({"AWOPS_PUSHGATEWAY_URL": pushgateway.url, "AWOPS_DAEMON_INSTANCE": "h"}),
    )

    def push(*results: JobResult) -> bool:
        metrics = Metrics(CollectorRegistry())
        for result in results:
            metrics.record_run(result, 1000.0)
        return push_run_metrics(config, metrics)

    assert push(
        JobResult("pg-backup", Status.OK, "", {}, 2.0),
        JobResult("pg-backup-verify", Status.ERROR, "", {}, 1.0),
    )
    assert pushgateway.value("awops_job_healthy", job="pg-backup", instance="h") == 1
    assert pushgateway.value("awops_job_healthy", job="pg-backup-verify", instance="h") == 0
    assert push(JobResult("pg-backup", Status.PROBLEM, "", {}, 2.0))
    assert pushgateway.value("awops_job_healthy", job="pg-backup", instance="h") == 0
    assert (
        pushgateway.value("awops_job_runs_total", job="pg-backup", status="ok", instance="h")
        is None
    )
    # A later push of another job leaves the verify job's last result in place.
    assert pushgateway.value("awops_job_healthy", job="pg-backup-verify", instance="h") == 0


def test_failed_push_is_logged_and_keeps_the_exit_code(aw_db: PgDatabase) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    env = aw_db.awops_env(AWOPS_PUSHGATEWAY_URL=unreachable)
    result = run_awops("run-once", "pg-health", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "push of the pg-health group to the Pushgateway failed" in result.stderr
    assert '"ok": true' in result.stdout

    # A failing run stays exit 1 when the push fails too.
    stopped = aw_db.awops_env(
        AWOPS_PUSHGATEWAY_URL=unreachable, PG_DB_PORT=str(free_port()), PG_POOL_TIMEOUT="1"
    )
    result = run_awops("run-once", "pg-health", env=stopped)
    assert result.returncode == 1
    assert "to the Pushgateway failed" in result.stderr


def _version() -> str:
    from awops import __version__

    return __version__

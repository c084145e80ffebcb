import json
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from awops.abc import Job
from awops.registry import JobRegistry
from awops.result import Outcome
from awops.settings import setting
from tests.fix_awops import DaemonProcess, clean_environ, daemon_in_thread, wait_for
from tests.fix_pg import PgDatabase, free_port


def sample(body: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def write_config(path: Path, port: int, schedule: str = "every 1s") -> None:
    path.write_text(
        f'[metrics]\naddr = "127.0.0.1:{port}"\n'
        "[daemon]\nshutdown_timeout_seconds = 10\n"
        f'[jobs.pg-health]\nschedule = "{schedule}"\njitter_seconds = 0\n'
    )


def test_daemon_runs_jobs_serves_metrics_and_stops_on_sigterm(aw_db: PgDatabase, tmp_path: Path):
    port = free_port()
    config = tmp_path / "awops.toml"
    write_config(config, port)
    daemon = DaemonProcess(config, aw_db.awops_env(), tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, what="/readyz")
        status, body = get(f"{base}/healthz")
        assert status == 200 and json.loads(body)["ok"] is True

        def runs() -> float:
            _, text = get(f"{base}/metrics")
            return sample(text, "awops_job_runs_total", job="pg-health", status="ok") or 0

        first = wait_for(runs, what="a first pg-health run")
        wait_for(lambda: runs() >= first + 2, what="awops_job_runs_total to rise")
        _, text = get(f"{base}/metrics")
        assert sample(text, "awops_job_healthy", job="pg-health") == 1
        assert sample(text, "awops_pg_up") == 1
        assert sample(text, "awops_build_info") == 1
        assert get(f"{base}/nope")[0] == 404
    finally:
        started = time.monotonic()
        code = daemon.stop()
    assert code == 0, daemon.logs()
    assert time.monotonic() - started < 10 + 5
    assert "awops daemon stopped" in daemon.logs()
    assert aw_db.cluster.password not in daemon.logs()


def test_readyz_fails_while_backend_unreachable(tmp_path: Path):
    port = free_port()
    config = tmp_path / "awops.toml"
    write_config(config, port, schedule="every 1h")
    env = {
        "DATABASE_BACKEND": "postgresql",
        "PG_DB_HOST": "127.0.0.1",
        "PG_DB_PORT": str(free_port()),
        "PG_POOL_TIMEOUT": "1",
    }
    daemon = DaemonProcess(config, env, tmp_path / "daemon.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(f"{base}/healthz")[0] == 200, what="/healthz")
        status, body = get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body)["backends_unreached"] == ["postgresql"]
    finally:
        assert daemon.stop() == 0


def test_sighup_keeps_old_config_when_new_one_is_invalid(aw_db: PgDatabase, tmp_path: Path):
    port = free_port()
    config = tmp_path / "awops.toml"
    write_config(config, port, schedule="every 1h")
    daemon = DaemonProcess(config, aw_db.awops_env(), tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, what="/readyz")
        config.write_text("[jobs.pg-health]\nschedule = 'every never'\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in daemon.logs(), what="the rejected reload")
        assert "jobs.pg-health.schedule" in daemon.logs()
        assert daemon.process.poll() is None
        assert get(f"{base}/healthz")[0] == 200

        write_config(config, port, schedule="every 1s")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.logs(), what="the reload")

        def runs() -> float:
            return (
                sample(
                    get(f"{base}/metrics")[1], "awops_job_runs_total", job="pg-health", status="ok"
                )
                or 0
            )

        wait_for(lambda: runs() >= 2, what="runs on the reloaded 1 s schedule")
    finally:
        assert daemon.stop() == 0


DEEP_YAML = "basic_auth_users: " + "[" * 5000 + "]" * 5000 + "\n"


def bad_files(tmp_path: Path) -> list[tuple[str, str]]:
    """(file content, what the log must name) for files that passed or crashed before."""
    web = tmp_path / "web.yml"
    web.write_text(DEEP_YAML)
    return [
        ("[jobs.pg-health]\njitter_seconds = 1e300\n", "jobs.pg-health.jitter_seconds"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested at most"),
        ("[jobs.pg-ttl-purge]\nmax_seconds_per_run = nan\n", "max_seconds_per_run"),
        ('[jobs.pg-health]\nschedule = "*/60 * * * *"\n', "jobs.pg-health.schedule"),
        ('[jobs.pg-health]\nschedule = "every 99999999999999999999h"\n', "at most"),
        ('[postgresql]\napplication_name = "awops\\u0000x"\n', "postgresql.application_name"),
        (f'[metrics]\nweb_config_file = "{web}"\n', "metrics.web_config_file"),
        ("symlink loop", "Too many levels of symbolic links"),
    ]


def test_sighup_with_a_bad_file_never_kills_the_daemon(aw_db: PgDatabase, tmp_path: Path):
    """Each file was accepted and crashed the daemon at reload (OverflowError, RecursionError,
    ValueError from the scheduler, OSError), or was accepted and would have done harm."""
    port = free_port()
    config = tmp_path / "awops.toml"
    write_config(config, port, schedule="every 1h")
    daemon = DaemonProcess(config, aw_db.awops_env(), tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, what="/readyz")
        for number, (content, named) in enumerate(bad_files(tmp_path), start=1):
            config.unlink()
            if content == "symlink loop":
                config.symlink_to(config)
            else:
                config.write_text(content)
            daemon.process.send_signal(signal.SIGHUP)
            wait_for(
                lambda n=number: (
                    daemon.logs().count("reload rejected") >= n or daemon.process.poll()
                ),
                what=f"reload {number} rejected",
            )
            assert daemon.process.poll() is None, daemon.logs()[-3000:]
            last = daemon.logs().split("reload rejected")[-1].splitlines()[0]
            assert named in last, last
            assert "keeping the running configuration" in daemon.logs()
            assert get(f"{base}/healthz")[0] == 200
        assert "Traceback" not in daemon.logs()

        config.unlink()
        write_config(config, port, schedule="every 1s")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.logs(), what="the good reload")

        def runs() -> float:
            text = get(f"{base}/metrics")[1]
            return sample(text, "awops_job_runs_total", job="pg-health", status="ok") or 0

        wait_for(lambda: runs() >= 2, what="runs on the reloaded 1 s schedule")
    finally:
        assert daemon.stop() == 0


def test_awops_run_refuses_at_start_what_would_crash_the_scheduler(tmp_path: Path):
    config = tmp_path / "awops.toml"
    config.write_text(
        f'[metrics]\naddr = "127.0.0.1:{free_port()}"\n[jobs.pg-health]\njitter_seconds = 1e300\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "awops", "run", "--config", str(config)],
        env=clean_environ({"DATABASE_BACKEND": "postgresql"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"{config}: jobs.pg-health.jitter_seconds: expected a number of at most" in result.stderr
    assert "Traceback" not in result.stderr


@dataclass
class _BuggyOptions:
    # A job whose own check has a bug: it raises instead of returning what it expected.
    mode: str = setting("fine", check=lambda value: None if value == "fine" else 1 / 0)


class _BuggyJob(Job):
    name = "buggy-check"
    backend = "postgresql"
    description = "a job whose option check raises"
    default_schedule = "every 1h"
    Options = _BuggyOptions

    def _run(self) -> Outcome:
        return Outcome.ok("fine")


def test_a_reload_that_raises_unexpectedly_keeps_the_running_daemon(
    aw_db: PgDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    registry = JobRegistry()
    registry.register(_BuggyJob)
    config_path = tmp_path / "awops.toml"
    config_path.write_text(f'[metrics]\naddr = "127.0.0.1:{free_port()}"\n')
    env = clean_environ(aw_db.awops_env())
    with daemon_in_thread(config_path, registry, env) as (daemon, thread):
        config = daemon.config
        wait_for(lambda: daemon._scheduler is not None and daemon._scheduler.running)
        config_path.write_text(config_path.read_text() + '[jobs.buggy-check]\nmode = "bad"\n')
        with caplog.at_level(logging.ERROR, logger="awops.daemon"):
            daemon.request_reload()
            wait_for(lambda: "reload failed" in caplog.text, what="the failed reload logged")
        assert "ZeroDivisionError" in caplog.text
        assert "keeping the running configuration" in caplog.text
        assert thread.is_alive()
        assert daemon.config is config
        assert daemon._scheduler.get_job("buggy-check") is not None
        assert daemon._healthz()[0]

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.fix_awops import clean_environ, wait_for
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


class DaemonProcess:
    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "awops", "run", "--config", str(config)],
            env=clean_environ(env),
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

    def logs(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


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

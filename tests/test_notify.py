"""Dead-man's-switch pings and the failure webhook, against a small HTTP server on loopback."""

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from awops.config import load_config
from awops.errors import ConfigError
from awops.notify import Notifier
from awops.registry import builtin_registry
from awops.result import JobResult, Status
from awops.runner import JobRunner
from tests.fix_awops import InProcess, clean_environ, run_awops
from tests.fix_pg import PgDatabase, free_port


@dataclass
class Received:
    method: str
    path: str
    body: bytes
    content_type: str


@dataclass
class PingServer:
    """Records every request; answers ``fail_first`` requests with ``fail_status`` first."""

    fail_first: int = 0
    fail_status: int = 500
    hang_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def paths(self) -> list[str]:
        return [r.path for r in self.received]


@pytest.fixture
def ping_server() -> Iterator[PingServer]:
    state = PingServer()
    lock = threading.Lock()
    released = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.received.append(
                    Received("POST", self.path, body, self.headers.get("Content-Type", ""))
                )
                failing = len(state.received) <= state.fail_first
            if state.hang_seconds:
                released.wait(state.hang_seconds)
            code = state.fail_status if failing else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        released.set()
        server.shutdown()
        server.server_close()


def notifier_of(runner: InProcess) -> Notifier:
    (notifier,) = runner.runner.observers
    assert isinstance(notifier, Notifier)
    return notifier


def test_ok_run_pings_start_then_success_with_summary(
    aw_db: PgDatabase, ping_server: PingServer, in_process
) -> None:
    check = f"{ping_server.url}/ping/0b1c-uuid"
    runner = in_process(aw_db.awops_env(AWOPS_JOB_PG_HEALTH_PING_URL=check + "/"))
    result = runner.run("pg-health")
    assert result.status is Status.OK
    assert notifier_of(runner).flush(30)
    assert ping_server.paths() == ["/ping/0b1c-uuid/start", "/ping/0b1c-uuid"]
    start, success = ping_server.received
    assert start.body == b""
    assert success.body.decode() == f"ok: {result.summary}"
    assert success.content_type.startswith("text/plain")


def test_failed_run_pings_fail_and_posts_the_webhook(
    ping_server: PingServer, in_process, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pw-never-in-a-ping"
    env = {
        "DATABASE_BACKEND": "postgresql",
        "PG_DB_HOST": "127.0.0.1",
        "PG_DB_PORT": str(free_port()),  # nothing listens: the run is an error
        "PG_DB_PASSWORD": password,
        "PG_POOL_TIMEOUT": "1",
        "AWOPS_DAEMON_INSTANCE": "db-host-1",
        "AWOPS_JOB_PG_HEALTH_PING_URL": f"{ping_server.url}/hc",
        "AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL": f"{ping_server.url}/hook?token=s3cret",
    }
    runner = in_process(env)
    result = runner.run("pg-health")
    assert result.status is Status.ERROR
    assert notifier_of(runner).flush(30)
    assert ping_server.paths() == ["/hc/start", "/hc/fail", "/hook?token=s3cret"]
    fail, hook = ping_server.received[1:]
    assert fail.body.decode() == f"error: {result.summary}"
    document = json.loads(hook.body)
    assert hook.content_type == "application/json"
    assert document["job"] == "pg-health"
    assert document["status"] == "error"
    assert document["summary"] == result.summary
    assert document["run_id"] == result.run_id
    assert document["instance"] == "db-host-1"
    assert password not in hook.body.decode() + fail.body.decode()


def test_retries_a_5xx_then_delivers(
    aw_db: PgDatabase, ping_server: PingServer, in_process
) -> None:
    ping_server.fail_first = 2  # the start ping fails twice; retries = 2 gets it through
    runner = in_process(aw_db.awops_env(AWOPS_JOB_PG_HEALTH_PING_URL=f"{ping_server.url}/hc"))
    assert runner.run("pg-health").status is Status.OK
    assert notifier_of(runner).flush(30)
    assert ping_server.paths() == ["/hc/start"] * 3 + ["/hc"]


def test_4xx_is_not_retried_and_never_fails_the_job(
    aw_db: PgDatabase, ping_server: PingServer, in_process, caplog: pytest.LogCaptureFixture
) -> None:
    ping_server.fail_first, ping_server.fail_status = 10, 404
    runner = in_process(aw_db.awops_env(AWOPS_JOB_PG_HEALTH_PING_URL=f"{ping_server.url}/hc"))
    with caplog.at_level(logging.WARNING, logger="awops.notify"):
        assert runner.run("pg-health").status is Status.OK
        assert notifier_of(runner).flush(30)
    assert ping_server.paths() == ["/hc/start", "/hc"]
    assert "could not send the pg-health start ping (attempt 1 of 3): HTTP 404" in caplog.text
    assert ping_server.url not in caplog.text  # the URL is a secret (healthchecks' UUID)


def test_unreachable_or_hanging_endpoint_never_fails_the_job(
    aw_db: PgDatabase, ping_server: PingServer, in_process, caplog: pytest.LogCaptureFixture
) -> None:
    ping_server.hang_seconds = 30  # answers long after the timeout
    env = aw_db.awops_env(
        AWOPS_JOB_PG_HEALTH_PING_URL=f"{ping_server.url}/hc",
        AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hook",
        AWOPS_NOTIFICATIONS_TIMEOUT_SECONDS="0.3",
        AWOPS_NOTIFICATIONS_RETRIES="1",
    )
    runner = in_process(env)
    with caplog.at_level(logging.WARNING, logger="awops.notify"):
        assert runner.run("pg-health").status is Status.OK
        # A failed result also posts the webhook, which nobody answers.
        failed = JobResult("pg-health", Status.PROBLEM, "slow", {}, 0.1, "r1")
        notifier_of(runner).run_finished(failed, dry_run=False)
        assert notifier_of(runner).flush(60)
    assert "could not send the pg-health start ping (attempt 2 of 2): TimeoutError" in caplog.text
    assert "could not send the pg-health failure webhook (attempt 2 of 2)" in caplog.text


def test_dry_runs_and_skipped_runs_send_nothing(
    aw_db: PgDatabase, ping_server: PingServer, in_process
) -> None:
    env = aw_db.awops_env(
        AWOPS_JOB_PG_HEALTH_PING_URL=f"{ping_server.url}/hc",
        AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL=f"{ping_server.url}/hook",
    )
    runner = in_process(env)
    assert runner.run("pg-health", dry_run=True).status is Status.OK
    notifier = notifier_of(runner)
    notifier.run_finished(JobResult("pg-health", Status.SKIPPED, "off", {}, 0, "r"), False)
    notifier.run_finished(JobResult("pg-health", Status.ERROR, "boom", {}, 0, "r"), True)
    assert notifier.flush(30)
    assert ping_server.received == []


def test_no_notifier_without_configuration() -> None:
    config = load_config(None, builtin_registry(), clean_environ())
    from awops.context import Resources
    from awops.metrics import NullMetrics

    runner = JobRunner(config, builtin_registry(), NullMetrics(), Resources(config))
    assert runner.observers == []


def test_ping_url_is_checked_and_masked(tmp_path: Path) -> None:
    registry = builtin_registry()
    with pytest.raises(ConfigError, match=r"AWOPS_JOB_PG_HEALTH_PING_URL: expected an http"):
        load_config(None, registry, clean_environ({"AWOPS_JOB_PG_HEALTH_PING_URL": "ftp://x"}))
    config_file = tmp_path / "awops.toml"
    config_file.write_text(
        '[jobs.pg-health]\nping_url = "https://hc.example/ping/uuid-secret"\n'
        '[notifications]\nfailure_webhook_url = "https://hooks.example/T0/secret"\n'
    )
    shown = run_awops("config", "--config", str(config_file))
    assert shown.returncode == 0, shown.stderr
    assert "uuid-secret" not in shown.stdout
    assert "hooks.example" not in shown.stdout
    assert 'ping_url = "********"' in shown.stdout
    config = load_config(config_file, registry, clean_environ())
    assert "https://hc.example/ping/uuid-secret" in config.secrets()


def test_run_once_delivers_before_it_exits(aw_db: PgDatabase, ping_server: PingServer) -> None:
    env = aw_db.awops_env(AWOPS_JOB_PG_HEALTH_PING_URL=f"{ping_server.url}/hc")
    result = run_awops("run-once", "pg-health", env=env)
    assert result.returncode == 0, result.stderr
    assert ping_server.paths() == ["/hc/start", "/hc"]

"""Every failure path, run with known secrets; no output, log line or metric may contain one.

The secrets: a PostgreSQL password (of a real role, and a wrong one), an AWS secret key, a
webhook URL and a ping URL (both secrets), a Pushgateway password in its URL, passwords in the
URLs of a backup target, an S3 endpoint and a DynamoDB endpoint, and a web config password.
Logs run at DEBUG, in both formats.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fix_awops import clean_environ, run_awops
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase, free_port

PG_PASSWORD = "Kn0wn-pg-" + secrets.token_hex(4) + "'\"; $x"
AWS_SECRET = "Kn0wnAwsSecret" + secrets.token_hex(6)
WEBHOOK = "https://hooks.example.invalid/Kn0wn-hook-" + secrets.token_hex(4)
PING = "http://127.0.0.1:1/Kn0wn-ping-" + secrets.token_hex(4)
PUSH_PASSWORD = "Kn0wn-push-" + secrets.token_hex(4)
# Credentials in URLs: s3://KEY:SECRET@bucket/prefix and endpoints with user:password@.
TARGET_SECRET = "Kn0wn-target-" + secrets.token_hex(4)
S3_SECRET = "Kn0wn-s3-" + secrets.token_hex(4)
DDB_SECRET = "Kn0wn-ddb-" + secrets.token_hex(4)
KNOWN = (
    PG_PASSWORD,
    AWS_SECRET,
    WEBHOOK,
    PING,
    PUSH_PASSWORD,
    TARGET_SECRET,
    S3_SECRET,
    DDB_SECRET,
)
# Pieces long enough to be the secret and not an accident, e.g. a password without its quoting.
FRAGMENTS = [secret.split("'")[0] for secret in KNOWN] + [
    "Kn0wn-hook",
    "Kn0wn-ping",
    "Kn0wn-push",
    "Kn0wn-target",
    "Kn0wn-s3",
    "Kn0wn-ddb",
]


def assert_clean(*texts: str) -> None:
    for text in texts:
        for fragment in FRAGMENTS:
            assert fragment not in text, f"{fragment!r} leaked in:\n{text[-2000:]}"


@pytest.fixture
def leaky_role(aw_db: PgDatabase) -> dict[str, str]:
    """The environment of an application whose role has the known password."""
    role = "leaky_" + secrets.token_hex(4)
    with aw_db.connect(autocommit=True) as conn:
        from psycopg import sql

        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(PG_PASSWORD)
            )
        )
    return aw_db.awops_env(
        PG_DB_USER=role,
        PG_DB_PASSWORD=PG_PASSWORD,
        AWOPS_LOG_LEVEL="DEBUG",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL=WEBHOOK,
        AWOPS_NOTIFICATIONS_TIMEOUT_SECONDS="0.5",
        AWOPS_NOTIFICATIONS_RETRIES="0",
    )


def test_failing_run_once_paths_never_show_a_secret(leaky_role: dict[str, str], tmp_path: Path):
    unreachable = {**leaky_role, "PG_DB_PORT": str(free_port())}
    wrong_password = {**leaky_role, "PG_DB_PASSWORD": PG_PASSWORD + "x"}
    bad_pg_dump = {
        **leaky_role,
        "AWOPS_BACKUP_TARGET": f"file://{tmp_path}/backups",
        "AWOPS_JOB_PG_BACKUP_PG_DUMP": str(tmp_path / "no-such-pg_dump"),
    }
    unwritable = {**leaky_role, "AWOPS_BACKUP_TARGET": "file:///proc/awops-backups"}
    dynamodb_down = {
        **leaky_role,
        "AWOPS_BACKENDS": "dynamodb",
        "AWS_DB_HOST": f"http://127.0.0.1:{free_port()}",
        "AWOPS_DYNAMODB_MAX_ATTEMPTS": "1",
        "AWOPS_DYNAMODB_CONNECT_TIMEOUT_SECONDS": "0.5",
    }
    push_down = {
        **leaky_role,
        "AWOPS_PUSHGATEWAY_URL": f"http://awops:{PUSH_PASSWORD}@127.0.0.1:{free_port()}",
    }
    cases = [
        (unreachable, ["pg-health", "pg-ttl-purge", "pg-backup"]),
        (wrong_password, ["pg-health", "pg-ttl-purge"]),
        (bad_pg_dump, ["pg-backup"]),
        (unwritable, ["pg-backup"]),
        ({**leaky_role, "AWOPS_BACKUP_TARGET": f"file://{tmp_path}/none"}, ["pg-backup-verify"]),
        (dynamodb_down, ["dynamodb-gsi", "dynamodb-ttl", "dynamodb-pitr"]),
        (push_down, ["pg-health"]),
    ]
    for number, (env, jobs) in enumerate(cases):
        log_format = ("text", "json")[number % 2]
        result = run_awops("run-once", *jobs, "--json", env={**env, "AWOPS_LOG_FORMAT": log_format})
        assert result.returncode == (0 if env is push_down else 1), result.stderr
        assert_clean(result.stdout, result.stderr)
        # They failed, and said so: the check is not vacuous.
        said = result.stdout + result.stderr
        assert '"status": "error"' in said or '"status": "problem"' in said or "failed" in said


def test_config_errors_and_rendering_never_show_a_secret(leaky_role: dict[str, str]):
    bad = [
        {"AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL": "ftp://" + WEBHOOK},
        {"PG_DB_PASSWORD": PG_PASSWORD, "PG_DB_PORT": "nope"},
        {"AWOPS_JOB_PG_HEALTH_PING_URL": "gopher://" + PING},
        {"AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_PASSWORD": PG_PASSWORD, "AWOPS_LOCK_BACKEND": "x"},
    ]
    for env in bad:
        result = run_awops("config", "--check", env={**leaky_role, **env})
        assert result.returncode == 2
        assert_clean(result.stdout, result.stderr)
    shown = run_awops("config", env={**leaky_role, "AWOPS_JOB_PG_HEALTH_PING_URL": PING})
    assert shown.returncode == 0, shown.stderr
    assert "********" in shown.stdout
    assert_clean(shown.stdout, shown.stderr)


def test_awops_config_masks_passwords_in_urls(leaky_role: dict[str, str]):
    urls = {
        "AWOPS_BACKUP_TARGET": f"s3://AKIAKEY:{TARGET_SECRET}@bucket/prefix,file:///var/b",
        "AWOPS_BACKUP_S3_ENDPOINT_URL": f"http://minio:{S3_SECRET}@127.0.0.1:9000",
        "AWOPS_PUSHGATEWAY_URL": f"http://awops:{PUSH_PASSWORD}@127.0.0.1:9091",
        "AWS_DB_HOST": f"http://local:{DDB_SECRET}@127.0.0.1:8000",
    }
    shown = run_awops("config", env={**leaky_role, **urls})
    assert shown.returncode == 0, shown.stderr
    assert_clean(shown.stdout, shown.stderr)
    # Masked, not dropped: the operator still sees which key, bucket and endpoint.
    assert 'targets = ["s3://AKIAKEY:********@bucket/prefix", "file:///var/b"]' in shown.stdout
    assert 's3_endpoint_url = "http://minio:********@127.0.0.1:9000"' in shown.stdout
    assert 'pushgateway_url = "http://awops:********@127.0.0.1:9091"' in shown.stdout
    assert 'endpoint_url = "http://local:********@127.0.0.1:8000"' in shown.stdout


@pytest.fixture
def webhook_bodies() -> Iterator[tuple[str, list[bytes]]]:
    """A failure webhook on loopback: its URL and the bodies it received."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_secret_in_job_details_reaches_neither_json_nor_logs_nor_the_webhook(
    leaky_role: dict[str, str], tmp_path: Path, webhook_bodies: tuple[str, list[bytes]]
):
    """pg-backup-verify of every target: the S3 endpoint is down, and botocore's message, with
    the endpoint's URL and its password, lands in ``details.targets[...].summary``."""
    url, bodies = webhook_bodies
    (tmp_path / "local").mkdir()
    env = {
        **leaky_role,
        "AWOPS_BACKUP_TARGETS": f"file://{tmp_path}/local,s3://bucket/prefix",
        "AWOPS_BACKUP_S3_ENDPOINT_URL": f"http://minio:{S3_SECRET}@127.0.0.1:{free_port()}",
        "AWOPS_JOB_PG_BACKUP_VERIFY_TARGET": "all",
        "AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL": url,
        "AWOPS_NOTIFICATIONS_RETRIES": "2",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWOPS_LOG_FORMAT": "json",
    }
    result = run_awops("run-once", "pg-backup-verify", "--json", env=env)
    assert result.returncode == 1, result.stderr
    assert_clean(result.stdout, result.stderr)
    (job,) = json.loads(result.stdout)["jobs"]
    s3 = job["details"]["targets"]["s3://bucket/prefix"]
    assert s3["status"] == "error"
    assert "minio:********@127.0.0.1" in s3["summary"], s3
    # run-once waits for its deliveries before it exits.
    (body,) = bodies
    assert_clean(body.decode())
    sent = json.loads(body)
    assert sent["job"] == "pg-backup-verify" and sent["status"] == "error"
    assert sent["details"] == job["details"]


def test_the_daemon_failing_against_dead_backends_never_shows_a_secret(
    leaky_role: dict[str, str], moto: MotoServer, tmp_path: Path
):
    port = free_port()
    config = tmp_path / "awops.toml"
    config.write_text(
        f'[metrics]\naddr = "127.0.0.1:{port}"\n'
        "[daemon]\nshutdown_timeout_seconds = 5\n"
        + "".join(
            f'[jobs.{job}]\nschedule = "every 1s"\njitter_seconds = 0\n'
            for job in ("pg-health", "pg-ttl-purge", "dynamodb-gsi")
        )
    )
    env = clean_environ(
        {
            **leaky_role,
            "PG_DB_PORT": str(free_port()),
            "AWOPS_BACKENDS": "postgresql,dynamodb",
            "AWS_DB_HOST": f"http://local:{DDB_SECRET}@127.0.0.1:{free_port()}",
            "AWOPS_DYNAMODB_MAX_ATTEMPTS": "1",
            "AWOPS_JOB_PG_TTL_PURGE_PING_URL": PING,
            "AWOPS_BACKUP_TARGET": f"s3://AKIAKEY:{TARGET_SECRET}@bucket/prefix",
        }
    )
    log = tmp_path / "daemon.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "awops", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    body = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                if 'status="error"} 2.0' in body or 'status="error"} 3.0' in body:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert 'status="error"' in body
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    logs = log.read_text()
    assert "failed" in logs or "error" in logs.lower()
    assert_clean(logs, body)

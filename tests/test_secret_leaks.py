"""Every failure path, run with known secrets; no output, log line or metric may contain one.

The secrets: a PostgreSQL password (of a real role, and a wrong one), an AWS secret key, a
webhook URL and a ping URL (both secrets), a Pushgateway password in its URL, and a web config
password. Logs run at DEBUG, in both formats.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
import urllib.request
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
KNOWN = (PG_PASSWORD, AWS_SECRET, WEBHOOK, PING, PUSH_PASSWORD)
# Pieces long enough to be the secret and not an accident, e.g. a password without its quoting.
FRAGMENTS = [secret.split("'")[0] for secret in KNOWN] + ["Kn0wn-hook", "Kn0wn-ping", "Kn0wn-push"]


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
            "AWS_DB_HOST": f"http://127.0.0.1:{free_port()}",
            "AWOPS_DYNAMODB_MAX_ATTEMPTS": "1",
            "AWOPS_JOB_PG_TTL_PURGE_PING_URL": PING,
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

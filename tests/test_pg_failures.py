"""A connection that fails says why, once: unreachable, authentication failed, database missing
or role missing, in one line per failure, with repeated warnings rate-limited."""

import io
import json
import logging
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from awops.logs import RepeatFilter
from awops.pg import (
    AUTHENTICATION_FAILED,
    DATABASE_MISSING,
    ROLE_MISSING,
    UNREACHABLE,
    describe_failure,
    failure_kind,
)
from tests.fix_awops import DaemonProcess, run_awops, wait_for
from tests.fix_pg import PgCluster, PgDatabase, free_port
from tests.test_daemon import get, sample


def _trust_role(cluster: PgCluster, role: str) -> None:
    """Let ``role`` in without a password, so the server says plainly that it does not exist
    (under password authentication it fails the same way as a wrong password)."""
    hba = cluster.data / "pg_hba.conf"
    hba.write_text(f"host all {role} 127.0.0.1/32 trust\n" + hba.read_text())
    subprocess.run(cluster._cmd("pg_ctl", "-D", str(cluster.data), "reload"), check=True)
    with cluster.connect() as conn:  # the reload is asynchronous: wait until it has applied
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pg_hba_file_rules WHERE %s = ANY(user_name)", [role]
                ).fetchone()[0]
                and not conn.execute(
                    "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
                ).fetchone()[0]
            ),
            what="pg_hba.conf reloaded",
        )


def _one_line_said(stderr: str, words: str) -> None:
    """``words`` in exactly one log line, no line continued on the next, no pool chatter."""
    lines = stderr.splitlines()
    assert len([line for line in lines if words in line]) == 1, stderr
    assert not [line for line in lines if line[:1].isspace()], stderr
    assert "error connecting" not in stderr and "psycopg.pool" not in stderr, stderr


@pytest.fixture
def private_db(pg_cluster_factory) -> PgDatabase:
    return pg_cluster_factory().create_database()


@pytest.mark.parametrize(
    ("override", "kind", "said"),
    [
        ({"PG_DB_PASSWORD": "wrong"}, AUTHENTICATION_FAILED, "password authentication failed"),
        ({"PG_DB_NAME": "no_such_db"}, DATABASE_MISSING, 'database "no_such_db" does not exist'),
        ({"PG_DB_USER": "ghost_pw"}, AUTHENTICATION_FAILED, 'for user "ghost_pw"'),
        ({"PG_DB_USER": "ghost"}, ROLE_MISSING, 'role "ghost" does not exist'),
        ({"PG_DB_PORT": "closed"}, UNREACHABLE, "Connection refused"),
    ],
)
@pytest.mark.parametrize("job", ["pg-health", "pg-ttl-purge"])
def test_each_failure_is_classified_in_one_line(
    private_db: PgDatabase, job: str, override: dict[str, str], kind: str, said: str
) -> None:
    if override.get("PG_DB_USER") == "ghost":
        _trust_role(private_db.cluster, "ghost")
    if override.get("PG_DB_PORT") == "closed":
        override = {"PG_DB_PORT": str(free_port())}
    env = private_db.awops_env(PG_POOL_TIMEOUT="30", **override)
    result = run_awops("run-once", job, "--json", env=env)
    assert result.returncode == 1, result.stderr
    (outcome,) = json.loads(result.stdout)["jobs"]
    assert outcome["status"] == "error"
    summary = outcome["summary"]
    target = f"{env['PG_DB_USER']}@127.0.0.1:{env['PG_DB_PORT']}/{env['PG_DB_NAME']}"
    if kind == UNREACHABLE:
        assert summary.startswith(f"PostgreSQL {target} unreachable: ")
    else:
        assert summary.startswith(f"PostgreSQL {target}: {kind}: ")
        assert "unreachable" not in summary
    assert said in summary
    assert "\n" not in summary
    _one_line_said(result.stderr, said)
    assert private_db.cluster.password not in result.stdout + result.stderr


def test_pg_backup_reports_the_cause_not_the_lock(private_db: PgDatabase, tmp_path: Path) -> None:
    env = private_db.awops_env(PG_DB_PASSWORD="wrong", AWOPS_BACKUP_TARGET=str(tmp_path))
    result = run_awops("run-once", "pg-backup", "--json", env=env)
    assert result.returncode == 1, result.stderr
    (outcome,) = json.loads(result.stdout)["jobs"]
    assert outcome["status"] == "error"
    assert f": {AUTHENTICATION_FAILED}: password authentication failed" in outcome["summary"]
    assert "cannot take the job lock" not in outcome["summary"]
    assert outcome["details"] == {"lock": "unavailable"}
    _one_line_said(result.stderr, "password authentication failed")


def test_classified_by_sqlstate_when_the_server_speaks_another_language() -> None:
    # What psycopg raises for a server error carries its SQLSTATE; the words may be French.
    assert failure_kind(psycopg.errors.InvalidPassword("mot de passe incorrect")) == (
        AUTHENTICATION_FAILED
    )
    assert failure_kind(psycopg.errors.InvalidCatalogName("la base n'existe pas")) == (
        DATABASE_MISSING
    )
    assert failure_kind(psycopg.errors.CannotConnectNow("démarrage")) == UNREACHABLE
    assert failure_kind(
        psycopg.errors.InvalidAuthorizationSpecification('role "x" does not exist')
    ) == (ROLE_MISSING)
    assert failure_kind(psycopg.errors.InvalidAuthorizationSpecification("pg_hba")) == (
        AUTHENTICATION_FAILED
    )
    other = psycopg.errors.InsufficientPrivilege("permission denied for table attributes")
    assert failure_kind(other) is None
    assert describe_failure("u@h:5432/d", other) == (
        "PostgreSQL u@h:5432/d: permission denied for table attributes"
    )


def test_a_daemon_with_the_database_down_says_each_thing_once(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "awops.toml"
    config.write_text(
        f'[metrics]\naddr = "127.0.0.1:{port}"\n'
        '[jobs.pg-health]\nschedule = "every 1s"\njitter_seconds = 0\n'
    )
    env = {
        "DATABASE_BACKEND": "postgresql",
        "PG_DB_HOST": "127.0.0.1",
        "PG_DB_PORT": str(free_port()),
        "PG_POOL_TIMEOUT": "1",
    }
    daemon = DaemonProcess(config, env, tmp_path / "daemon.log")
    try:

        def errors() -> float:
            _, body = get(f"http://127.0.0.1:{port}/metrics")
            return sample(body, "awops_job_runs_total", job="pg-health", status="error") or 0

        wait_for(lambda: errors() >= 4, what="four failed pg-health runs")
    finally:
        assert daemon.stop() == 0
    lines = daemon.logs().splitlines()
    assert not [line for line in lines if line[:1].isspace()], "a warning ran over two lines"
    assert not [line for line in lines if "psycopg.pool" in line]
    warnings = [line.split(" ", 1)[1] for line in lines if " WARNING " in line]
    # The same warning word for word is written once (then counted, every five minutes).
    texts = [line.split(": ", 1)[1] for line in warnings]
    repeated = {text for text in texts if texts.count(text) > 1}
    assert not repeated, repeated
    assert len([text for text in texts if text.startswith("postgresql not reachable yet")]) == 1
    failed_runs = [text for text in texts if text.startswith("finished: error")]
    assert failed_runs and all("unreachable: Connection refused" in t for t in failed_runs)


def _logger(repeat: RepeatFilter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(repeat)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"awops.test.repeat.{id(repeat)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_repeated_warnings_are_written_once_then_counted() -> None:
    now = [1000.0]
    repeat = RepeatFilter(interval_seconds=300, clock=lambda: now[0])
    logger, stream = _logger(repeat)
    for _ in range(5):
        logger.warning("pool %s could not connect", "awops")
        logger.info("an info line is never held back")
        now[0] += 10
    logger.warning("another warning")
    logger.error("pool %s could not connect", "awops")  # another level: its own count
    now[0] = 1301.0
    logger.warning("pool %s could not connect", "awops")
    logger.warning("pool %s could not connect", "awops")
    now[0] = 1700.0
    logger.warning("pool %s could not connect", "awops")
    assert stream.getvalue().splitlines() == [
        "WARNING pool awops could not connect",
        *["INFO an info line is never held back"] * 5,
        "WARNING another warning",
        "ERROR pool awops could not connect",
        "WARNING pool awops could not connect (repeated 4 times in 301 s)",
        "WARNING pool awops could not connect (repeated 1 time in 399 s)",
    ]


def test_repeat_filter_keeps_jobs_apart_and_forgets_the_oldest() -> None:
    repeat = RepeatFilter(interval_seconds=300, clock=time.monotonic)
    logger, stream = _logger(repeat)
    for job in ("pg-health", "pg-backup", "pg-health"):
        logger.warning("failed", extra={"job": job})
    assert stream.getvalue().splitlines() == ["WARNING failed", "WARNING failed"]
    for number in range(RepeatFilter.MAX_KEYS + 1):
        logger.warning("distinct %d", number)
    logger.warning("distinct %d", 0)  # the oldest was forgotten: written again
    assert stream.getvalue().splitlines()[-1] == "WARNING distinct 0"

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fix_awops import clean_environ, run_awops
from tests.fix_pg import PgDatabase


def test_help_jobs_and_config_check_need_no_database() -> None:
    env = {"DATABASE_BACKEND": "postgresql", "PG_DB_PORT": "1"}
    for args in (["--help"], ["jobs"], ["config", "--check"], ["--version"]):
        result = run_awops(*args, env=env)
        assert result.returncode == 0, result.stderr
    listing = run_awops("jobs", env=env).stdout
    assert (
        listing.splitlines()[0] == "backends: postgresql (environment DATABASE_BACKEND=postgresql)"
    )
    assert listing.splitlines()[2].split() == [
        "JOB",
        "ENABLED",
        "BACKEND",
        "SCHEDULE",
        "NEXT",
        "RUN",
    ]
    assert "pg-health" in listing


def test_run_once_pg_health_json(aw_db: PgDatabase) -> None:
    result = run_awops("run-once", "pg-health", "--json", env=aw_db.awops_env())
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True
    (job,) = document["jobs"]
    assert job["job"] == "pg-health"
    assert job["status"] == "ok"
    assert set(job) == {"job", "status", "duration_seconds", "summary", "details"}
    assert job["details"]["ping_seconds"] > 0
    # logs go to stderr, carrying the job name and run id
    assert "pg-health" in result.stderr


def test_run_once_human_table(aw_db: PgDatabase) -> None:
    result = run_awops("run-once", "pg-health", env=aw_db.awops_env())
    assert result.returncode == 0
    header, row = result.stdout.splitlines()
    assert header.split() == ["JOB", "STATUS", "DURATION", "SUMMARY"]
    assert row.split()[:2] == ["pg-health", "ok"]


def test_run_once_server_stopped_is_error_without_password(pg_cluster_factory) -> None:
    cluster = pg_cluster_factory()
    db = cluster.create_database()
    env = db.awops_env(AWOPS_LOG_FORMAT="json")
    cluster.stop()
    result = run_awops("run-once", "pg-health", "--json", env=env)
    assert result.returncode == 1
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "error"
    assert "unreachable" in job["summary"]
    assert cluster.password not in result.stdout + result.stderr


def test_malformed_config_exits_2_before_touching_anything(tmp_path: Path) -> None:
    bad = tmp_path / "awops.toml"
    bad.write_text("[postgresql\nport = 5432\n")
    result = run_awops("run-once", "pg-health", "--config", str(bad), env={})
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_usage_errors_exit_2() -> None:
    assert run_awops("run-once", env={}).returncode == 2
    unknown = run_awops("run-once", "no-such-job", env={})
    assert unknown.returncode == 2
    assert "unknown job 'no-such-job'" in unknown.stderr


def test_config_leaves_secrets_out() -> None:
    result = run_awops("config", env={"PG_DB_PASSWORD": "mask-me-please"})
    assert result.returncode == 0
    assert "mask-me-please" not in result.stdout
    assert (
        '# password = "********"  (a secret, not printed: write it here, or set PG_DB_PASSWORD)'
        in (result.stdout)
    )


def test_run_once_of_pg_job_imports_neither_boto3_nor_apscheduler_nor_prometheus_client(
    aw_db: PgDatabase,
) -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['awops', 'run-once', 'pg-health']\n"
        "try:\n"
        "    runpy.run_module('awops', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "roots = ('boto3', 'botocore', 'apscheduler', 'prometheus_client')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=clean_environ(aw_db.awops_env()),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_run_once_still_validates_jobs_it_does_not_run(tmp_path: Path) -> None:
    # Only named and configured job modules are imported, but a bad key of any job counts.
    bad = tmp_path / "awops.toml"
    bad.write_text("[jobs.pg-backup]\nkeep_last = 'many'\n")
    result = run_awops("run-once", "pg-health", "--config", str(bad), env={})
    assert result.returncode == 2
    assert "jobs.pg-backup.keep_last" in result.stderr
    from_env = run_awops(
        "run-once", "pg-health", env={"AWOPS_JOB_DYNAMODB_TTL_SCAN_SEGMENTS": "lots"}
    )
    assert from_env.returncode == 2
    assert "AWOPS_JOB_DYNAMODB_TTL_SCAN_SEGMENTS" in from_env.stderr


def test_every_job_module_is_named_after_its_job() -> None:
    # builtin_registry finds a job by its module's file name before importing it.
    from awops.registry import JobRegistry, builtin_registry

    registry = builtin_registry()
    built_in = [
        job for job in registry if job.__module__.startswith(("awops.jobs.", "awops.checks."))
    ]
    assert len(built_in) >= 9
    for job_class in built_in:
        module = job_class.__module__.rsplit(".", 1)[1]
        assert module.replace("_", "-") == job_class.name
    lazy = JobRegistry()
    lazy.add_lazy("pg-health", "awops.checks.pg_health")
    assert "pg-health" in lazy and lazy.names() == []

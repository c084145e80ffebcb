"""What an operator reads: each backup target's own cause in summaries and details, and dry
runs of the verify jobs that restore nothing (no scratch database, table or directory)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fix_awops import run_awops
from tests.fix_dynamodb import create_table
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase, free_port
from tests.fix_pgbackrest import PgBackRestStanza, needs_pgbackrest
from tests.test_dynamodb_jobs import ACTORS, put_actors
from tests.test_dynamodb_jobs import verify_env as dynamodb_verify_env
from tests.test_pg_backup import fill, scratch_databases
from tests.test_pgbackrest_restore_verify import processes_mentioning
from tests.test_pgbackrest_restore_verify import verify_env as pgbackrest_verify_env

VERIFY = "pg-backup-verify"


def blocked_target(tmp_path: Path) -> Path:
    """A "directory" that is a file: a target that cannot be opened."""
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    return blocked


def test_targets_that_cannot_be_opened_are_named_with_their_causes(
    aw_db: PgDatabase, moto: MotoServer, tmp_path: Path
) -> None:
    blocked = blocked_target(tmp_path)
    unreachable = f"http://127.0.0.1:{free_port()}"  # a closed loopback port
    env = aw_db.awops_env(
        **moto.aws_env(),
        AWOPS_BACKUP_TARGET=f"{blocked},s3://nowhere/pg",
        AWOPS_BACKUP_S3_ENDPOINT_URL=unreachable,
        AWOPS_DYNAMODB_MAX_ATTEMPTS="1",
    )
    done = run_awops("run-once", "pg-backup", "--json", env=env, timeout=180)
    assert done.returncode == 1
    (job,) = json.loads(done.stdout)["jobs"]
    assert job["status"] == "error"
    failed = job["details"]["failed_targets"]
    assert set(failed) == {f"file://{blocked}", "s3://nowhere/pg"}
    assert "unreachable" in failed["s3://nowhere/pg"]
    assert failed[f"file://{blocked}"]
    # The summary carries each target with its cause, not only "could not be opened".
    for url, cause in failed.items():
        assert f"{url}: {cause}" in job["summary"]


def test_with_one_good_and_one_bad_target_the_summary_names_both(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
) -> None:
    fill(aw_db)
    blocked, good = blocked_target(tmp_path), tmp_path / "good"
    result = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=f"{blocked},{good}")).run("pg-backup")
    assert result.status == "error"
    assert result.details["targets"] == [f"file://{good}"]
    cause = result.details["failed_targets"][f"file://{blocked}"]
    assert f"to file://{good}" in result.summary
    assert f"failed on file://{blocked}: {cause}" in result.summary


def test_verify_dry_run_restores_nothing_and_says_what_it_would(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
) -> None:
    fill(aw_db)
    target = tmp_path / "b"
    # A verify role that may not create databases: a real verify fails at its CREATE DATABASE.
    role = f"verifier_{aw_db.name}"
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'verifier-pw'")
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(target),
        AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_USER=role,
        AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_PASSWORD="verifier-pw",
    )
    runner = in_process(env)
    assert runner.run("pg-backup").status == "ok"
    files_before = sorted(p.name for p in target.iterdir())

    dry = runner.run(VERIFY, dry_run=True)
    assert dry.status == "ok", dry.summary
    assert dry.summary.startswith("dry run: would restore backup ")
    assert dry.details["dry_run"] is True
    assert dry.details["stored_size_bytes"] == dry.details["size_bytes"]
    assert sorted(p.name for p in target.iterdir()) == files_before  # no verify record
    assert scratch_databases(aw_db) == []

    real = runner.run(VERIFY)
    assert real.status != "ok"
    assert "permission denied to create database" in real.summary


def test_verify_dry_run_finds_a_dump_of_the_wrong_size(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
) -> None:
    fill(aw_db)
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    assert runner.run("pg-backup").status == "ok"
    (dump,) = target.glob("*.dump")
    dump.write_bytes(dump.read_bytes()[:-10])
    dry = runner.run(VERIFY, dry_run=True)
    assert dry.status == "problem"
    assert "the manifest says" in dry.summary and "nothing restored" in dry.summary


def test_run_once_all_dry_run_creates_no_scratch_database(
    aw_db: PgDatabase, tmp_path: Path
) -> None:
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target))
    assert run_awops("run-once", "pg-backup", env=env, timeout=180).returncode == 0
    files_before = sorted(p.name for p in target.iterdir())
    done = run_awops("run-once", "--all", "--dry-run", "--json", env=env, timeout=180)
    jobs = {job["job"]: job for job in json.loads(done.stdout)["jobs"]}
    assert jobs[VERIFY]["status"] == "ok", jobs[VERIFY]["summary"]
    assert jobs[VERIFY]["details"]["dry_run"] is True
    assert "restored in" not in jobs[VERIFY]["summary"]
    assert sorted(p.name for p in target.iterdir()) == files_before
    assert scratch_databases(aw_db) == []


def test_dynamodb_restore_verify_dry_run_creates_and_deletes_no_table(
    aw_dynamodb: Any, moto: MotoServer, in_process: Any
) -> None:
    put_actors(aw_dynamodb, 3)
    leftover = f"awops-verify-{ACTORS}-20200101T000000Z"  # a killed run's scratch table
    create_table(aw_dynamodb, leftover, "id")
    tables_before = sorted(aw_dynamodb.list_tables()["TableNames"])
    dry = in_process(dynamodb_verify_env(moto)).run("dynamodb-restore-verify", dry_run=True)
    assert dry.status == "ok", dry.summary
    assert dry.details["dry_run"] is True
    assert sorted(aw_dynamodb.list_tables()["TableNames"]) == tables_before


@needs_pgbackrest
@pytest.mark.slow
def test_pgbackrest_restore_verify_dry_run_restores_and_removes_nothing(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    dead_pid = 4_000_000  # above pid_max: a run that died
    stale = work_dir / f"awops-pgbr-verify-20260101T000000Z-{dead_pid}-0badc0de"
    (stale / "data").mkdir(parents=True)
    try:
        runner = in_process(pgbackrest_verify_env(pgbackrest_stanza, work_dir))
        dry = runner.run("pgbackrest-restore-verify", dry_run=True)
        left = sorted(work_dir.iterdir())
    finally:
        shutil.rmtree(stale)  # the session's stanza is shared: leave its work_dir empty
    assert dry.status == "ok", dry.summary
    assert dry.summary.startswith("dry run: would restore ")
    assert dry.details["dry_run"] is True
    assert dry.details["would_remove_stale"] == [stale.name]
    assert "restore_seconds" not in dry.details
    assert left == [stale]  # kept, and no scratch directory made
    assert processes_mentioning(str(work_dir)) == {}


@needs_pgbackrest
@pytest.mark.slow
def test_pgbackrest_dry_run_archives_nothing(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    dry = in_process(pgbackrest_stanza.awops_env()).run("pgbackrest", dry_run=True)
    assert dry.status == "ok", dry.summary
    # pgbackrest check switches the WAL and archives the segment: not in a dry run.
    assert dry.details["check"] == {
        "ran": False,
        "reason": "dry run: pgbackrest check archives a WAL segment",
    }

"""pg-backup-verify: damaged dumps and lying manifests are problems; no scratch database stays."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.fix_pg import PgDatabase
from tests.test_pg_backup import fill, scratch_databases


def _backup(aw_db: PgDatabase, in_process: Any, tmp_path: Path) -> tuple[Any, Path, Path]:
    fill(aw_db)
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    assert runner.run("pg-backup").status == "ok"
    (dump,) = target.glob("*.dump")
    (manifest,) = target.glob("*.manifest.json")
    return runner, dump, manifest


def test_flipped_byte_is_a_problem(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    runner, dump, _ = _backup(aw_db, in_process, tmp_path)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    result = runner.run("pg-backup-verify")
    assert result.status == "problem"
    assert "sha256" in result.summary
    assert (
        runner.value(
            "awops_backup_verify_last_success_timestamp_seconds",
            backend="postgresql",
            target=f"file://{dump.parent}",
        )
        is None
    )
    assert scratch_databases(aw_db) == []


def test_all_targets_are_verified_and_a_damaged_one_is_named(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    expected = fill(aw_db)
    good, damaged, empty = tmp_path / "good", tmp_path / "damaged", tmp_path / "empty"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=f"{good},{damaged}")
    assert in_process(env).run("pg-backup").status == "ok"
    (dump,) = damaged.glob("*.dump")
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    empty.mkdir()
    runner = in_process(
        {
            **env,
            "AWOPS_BACKUP_TARGET": f"{good},{damaged},{empty}",
            "AWOPS_JOB_PG_BACKUP_VERIFY_TARGET": "all",
        }
    )

    result = runner.run("pg-backup-verify")

    assert result.status == "problem"
    assert result.summary.startswith("2 of 3 targets failed verification")
    assert f"file://{damaged}: backup" in result.summary and "sha256" in result.summary
    assert f"file://{empty}: no complete backup" in result.summary
    by_target = result.details["targets"]
    assert by_target[f"file://{good}"]["status"] == "ok"
    assert by_target[f"file://{good}"]["rows"] == sum(expected.values())
    assert by_target[f"file://{damaged}"]["status"] == "problem"
    verified = "awops_backup_verify_last_success_timestamp_seconds"
    assert runner.value(verified, backend="postgresql", target=f"file://{good}") is not None
    assert runner.value(verified, backend="postgresql", target=f"file://{damaged}") is None
    assert scratch_databases(aw_db) == []


def test_an_unreadable_target_is_an_error_and_the_others_are_still_verified(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    good, unreadable = tmp_path / "good", tmp_path / "not-a-directory"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(good))
    assert in_process(env).run("pg-backup").status == "ok"
    unreadable.write_text("a file where a target directory should be")
    runner = in_process(
        {
            **env,
            "AWOPS_BACKUP_TARGET": f"{unreadable},{good}",
            "AWOPS_JOB_PG_BACKUP_VERIFY_TARGET": "all",
        }
    )

    result = runner.run("pg-backup-verify")

    assert result.status == "error"
    assert result.summary.startswith("1 of 2 targets failed verification")
    by_target = result.details["targets"]
    assert by_target[f"file://{unreadable}"]["status"] == "error"
    assert "Not a directory" in by_target[f"file://{unreadable}"]["summary"]
    assert by_target[f"file://{good}"]["status"] == "ok"
    assert scratch_databases(aw_db) == []


def test_manifest_count_mismatch_is_a_problem(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    runner, _, manifest_path = _backup(aw_db, in_process, tmp_path)
    manifest = json.loads(manifest_path.read_text())
    manifest["table_rows"]["public.actors"] += 1
    manifest_path.write_text(json.dumps(manifest))
    result = runner.run("pg-backup-verify")
    assert result.status == "problem"
    assert "public.actors: manifest 301 rows, restored 300" in result.summary
    assert result.details["restore_seconds"] > 0
    assert scratch_databases(aw_db) == []


def test_archive_that_does_not_restore_is_a_problem(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    """The manifest matches the bytes, but the bytes are no dump: pg_restore fails."""
    runner, dump, manifest_path = _backup(aw_db, in_process, tmp_path)
    data = dump.read_bytes()
    broken = data[: len(data) // 2]
    dump.write_bytes(broken)
    manifest = json.loads(manifest_path.read_text())
    manifest.update(size_bytes=len(broken), sha256=hashlib.sha256(broken).hexdigest())
    manifest_path.write_text(json.dumps(manifest))
    result = runner.run("pg-backup-verify")
    assert result.status == "problem"
    assert "pg_restore" in result.summary
    assert scratch_databases(aw_db) == []


def test_no_backup_is_a_problem(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / f"{aw_db.name}-20260101T030000.000Z.dump").write_bytes(b"PGDMP")
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(tmp_path / "b")))
    result = runner.run("pg-backup-verify")
    assert result.status == "problem"
    assert "no complete backup" in result.summary


def test_verify_on_a_separate_server(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path, pg_cluster_factory: Any
):
    other = pg_cluster_factory()
    _runner, _, _ = _backup(aw_db, in_process, tmp_path)
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(tmp_path / "b"),
        AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_HOST="127.0.0.1",
        AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_PORT=str(other.port),
        AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_PASSWORD=other.password,
        AWOPS_JOB_PG_BACKUP_VERIFY_RESTORE_JOBS="1",
    )
    result = in_process(env).run("pg-backup-verify")
    assert result.status == "ok", result.summary
    with other.connect(autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'awops\\_verify\\_%'"
        ).fetchone()
    assert left == (0,)
    assert other.password not in result.summary


def test_scratch_database_of_a_dead_run_is_dropped_a_day_later(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    runner, _, _ = _backup(aw_db, in_process, tmp_path)
    stale = "awops_verify_20200101000000_deadbeef"
    young = "awops_verify_29990101000000_running"  # another replica's run, still restoring
    with aw_db.cluster.connect(autocommit=True) as conn:
        for name in (stale, young):
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        result = runner.run("pg-backup-verify")
        assert result.status == "ok", result.summary
        assert scratch_databases(aw_db) == [young]
    finally:
        with aw_db.cluster.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{young}"')
            conn.execute(f'DROP DATABASE IF EXISTS "{stale}"')

"""Backups against what goes wrong around them: a host clock a year off, database names that
are paths, manifests that lie about their types, and target URLs that name the wrong place.

The clock tests run ``awops run-once`` under ``faketime`` (libfaketime preloaded), so awops
and its pg_dump see a shifted clock while the real throwaway server keeps the true one.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fix_awops import clean_environ, run_awops
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase
from tests.test_pg_backup import backups_in, fill, scratch_databases

YEAR_SECONDS = 365 * 86400
KEEP_ONLY_THE_NEWEST = {
    "AWOPS_JOB_PG_BACKUP_KEEP_LAST": "1",
    "AWOPS_JOB_PG_BACKUP_KEEP_DAILY": "0",
    "AWOPS_JOB_PG_BACKUP_KEEP_WEEKLY": "0",
    "AWOPS_JOB_PG_BACKUP_KEEP_MONTHLY": "0",
}


def awops_json(
    *args: str, env: Mapping[str, str], faketime: str | None = None
) -> tuple[int, dict[str, Any], str]:
    """``awops <args> --json`` as a subprocess, under ``faketime -f <faketime>`` if given:
    the exit code, the job's JSON and stderr."""
    command = [sys.executable, "-m", "awops", *args, "--json"]
    if faketime is not None:
        command = ["faketime", "-f", faketime, *command]
    done = subprocess.run(
        command, env=clean_environ(env), capture_output=True, text=True, timeout=180
    )
    assert "Traceback" not in done.stderr, done.stderr
    (job,) = json.loads(done.stdout)["jobs"]
    return done.returncode, job, done.stderr


def python_clock_under(offset: str) -> float:
    """time.time() as a Python subprocess sees it under ``faketime -f <offset>``."""
    done = subprocess.run(
        ["faketime", "-f", offset, sys.executable, "-c", "import time; print(time.time())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(done.stdout)


def manifests(target: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name.removesuffix(".manifest.json"): json.loads(p.read_text())
        for p in target.glob("*.manifest.json")
    }


def add_rows(db: PgDatabase, count: int) -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes SELECT 'z', 'clock' || g || %s, 'b', 'n', NULL, now(), NULL "
            "FROM generate_series(1, %s) g",
            (secrets.token_hex(4), count),
        )


def host_shift(manifest: dict[str, Any]) -> float:
    """How far the host's clock was off when ``manifest`` was written (started_at is the
    host's), in seconds, give or take the minutes since."""
    return datetime.fromisoformat(manifest["started_at"]).timestamp() - time.time()


@pytest.mark.parametrize("offset", ["+365d", "-365d"])
def test_faketime_sees_a_shifted_clock(offset: str):
    shift = python_clock_under(offset) - time.time()
    expected = YEAR_SECONDS if offset.startswith("+") else -YEAR_SECONDS
    assert abs(shift - expected) < 3600, shift


def test_a_backup_taken_a_year_fast_does_not_outrank_the_backups_after_it(
    aw_db: PgDatabase, tmp_path: Path
):
    """The reported case: one run a year fast, then normal runs with keep_last = 1."""
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), **KEEP_ONLY_THE_NEWEST)

    code, fast, stderr = awops_json("run-once", "pg-backup", env=env, faketime="+365d")
    assert code == 0, stderr
    fast_manifest = manifests(target)[fast["details"]["backup"]]
    # awops saw the shifted clock: started_at is the host's.
    assert host_shift(fast_manifest) == pytest.approx(YEAR_SECONDS, abs=3600)

    for extra_rows in (7, 11):
        add_rows(aw_db, extra_rows)
        code, normal, stderr = awops_json("run-once", "pg-backup", env=env)
        assert code == 0, (normal["summary"], stderr)
        # The backup this run wrote is the one that stays.
        assert list(manifests(target)) == [normal["details"]["backup"]]
        assert normal["details"]["retention_deleted"][f"file://{target}"]

    code, verify, stderr = awops_json("run-once", "pg-backup-verify", env=env)
    assert code == 0, (verify["summary"], stderr)
    assert verify["details"]["backup"] == normal["details"]["backup"]
    assert verify["details"]["rows"] == normal["details"]["rows"]
    # The server's clock was never shifted: the fast run's backup was dated by it.
    snapshot_time = datetime.fromisoformat(fast_manifest["snapshot_time"]).timestamp()
    assert snapshot_time == pytest.approx(time.time(), abs=3600)


def test_a_backup_taken_a_year_slow_is_still_the_newest(aw_db: PgDatabase, tmp_path: Path):
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), **KEEP_ONLY_THE_NEWEST)
    code, first, stderr = awops_json("run-once", "pg-backup", env=env)
    assert code == 0, stderr

    add_rows(aw_db, 13)
    code, slow, stderr = awops_json("run-once", "pg-backup", env=env, faketime="-365d")
    assert code == 0, (slow["summary"], stderr)
    slow_manifest = manifests(target).get(slow["details"]["backup"])
    assert slow_manifest is not None, "retention deleted the backup its own run wrote"
    assert host_shift(slow_manifest) == pytest.approx(-YEAR_SECONDS, abs=3600)
    assert list(manifests(target)) == [slow["details"]["backup"]]
    assert slow["details"]["retention_deleted"] == {
        f"file://{target}": [first["details"]["backup"]]
    }

    for offset in ("-365d", None):
        code, verify, stderr = awops_json("run-once", "pg-backup-verify", env=env, faketime=offset)
        assert code == 0, (verify["summary"], stderr)
        assert verify["details"]["backup"] == slow["details"]["backup"]
        assert verify["details"]["rows"] == slow["details"]["rows"]


def shift_backup(target: Path, backup: str, seconds: float, keep_snapshot_time: bool) -> str:
    """Rename ``backup`` as if its host clock had been ``seconds`` off when it was written,
    with a manifest to match: an older awops's (no snapshot_time) or, with
    ``keep_snapshot_time``, one that records the server's true time. Its new id."""
    database_key, _, stamp = backup.rpartition("-")
    named = datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    moved_time = datetime.fromtimestamp(named.timestamp() + seconds, UTC)
    moved = f"{database_key}-{moved_time.strftime('%Y%m%dT%H%M%S.%f')[:-3]}Z"
    manifest = json.loads((target / f"{backup}.manifest.json").read_text())
    dump = target / manifest["dump_file"]
    manifest["dump_file"] = manifest["dump_file"].replace(backup, moved)
    manifest["backup"] = moved
    started = datetime.fromisoformat(manifest["started_at"]).timestamp() + seconds
    manifest["started_at"] = datetime.fromtimestamp(started, UTC).isoformat()
    if not keep_snapshot_time:
        manifest.pop("snapshot_time", None)
        manifest["format_version"] = 1
    dump.rename(target / manifest["dump_file"])
    if manifest["globals"]["status"] == "ok":
        roles = target / manifest["globals"]["file"]
        manifest["globals"]["file"] = manifest["globals"]["file"].replace(backup, moved)
        roles.rename(target / manifest["globals"]["file"])
    (target / f"{backup}.manifest.json").unlink()
    (target / f"{moved}.manifest.json").write_text(json.dumps(manifest))
    return moved


def test_verify_picks_the_newest_by_server_time_not_by_name(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    older = runner.run("pg-backup")
    assert older.status == "ok", older.summary
    add_rows(aw_db, 17)
    newer = runner.run("pg-backup")
    assert newer.status == "ok", newer.summary
    # The older backup's name says a year later (a fast host clock named it); its manifest
    # holds the server's true snapshot time.
    renamed = shift_backup(target, older.details["backup"], YEAR_SECONDS, keep_snapshot_time=True)
    assert sorted(manifests(target))[-1] == renamed

    result = runner.run("pg-backup-verify")
    assert result.status == "ok", result.summary
    assert result.details["backup"] == newer.details["backup"]
    assert result.details["rows"] == newer.details["rows"]
    assert result.details["dated_by"] == "snapshot_time"


def test_a_backup_dated_in_the_future_is_a_problem_never_the_newest(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    """An older awops on a host a year fast dated its backup by the host's clock."""
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), **KEEP_ONLY_THE_NEWEST)
    runner = in_process(env)
    planted = runner.run("pg-backup")
    assert planted.status == "ok", planted.summary
    future = shift_backup(target, planted.details["backup"], YEAR_SECONDS, False)

    add_rows(aw_db, 19)
    result = runner.run("pg-backup")
    assert result.status == "problem", result.summary
    assert future in result.summary
    assert "dated after the database server's clock" in result.summary
    written = result.details["backup"]
    assert sorted(manifests(target)) == sorted([future, written])  # neither deleted
    assert [b["backup"] for b in result.details["future_backups"][f"file://{target}"]] == [future]
    labels = {"backend": "postgresql", "target": f"file://{target}"}
    assert runner.value("awops_backup_future_dated_backups", **labels) == 1

    verify = runner.run("pg-backup-verify")
    assert verify.status == "problem", verify.summary
    assert future in verify.summary
    assert "restore_seconds" not in verify.details
    assert scratch_databases(aw_db) == []

    # Once the operator removes it, the backup written since is the newest.
    for path in target.glob(f"{future}.*"):
        path.unlink()
    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    assert verify.details["backup"] == written


def test_a_manifest_from_before_snapshot_time_is_dated_by_started_at(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    result = runner.run("pg-backup")
    assert result.status == "ok", result.summary
    old = shift_backup(target, result.details["backup"], 0, keep_snapshot_time=False)
    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    assert verify.details["backup"] == old
    assert verify.details["dated_by"] == "started_at"


# --- database names that are paths ----------------------------------------------------------


@pytest.mark.parametrize("name", ["../aw-escape", "aw/inside/..", "aw\u00e9 %2F x"])
def test_a_database_name_never_moves_backups_out_of_their_directory(
    pg_cluster: Any, in_process: Any, tmp_path: Path, name: str
):
    from tests.fix_schema import create_actingweb_schema

    db = pg_cluster.create_database(name + secrets.token_hex(3))
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
    expected = fill(db)
    target = tmp_path / "deep" / "b"
    env = db.awops_env(AWOPS_BACKUP_TARGET=str(target), **KEEP_ONLY_THE_NEWEST)
    try:
        first = in_process(env).run("pg-backup")
        assert first.status == "ok", first.summary
        assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
            ["deep", "b", *backups_in(target)]
        )
        assert len(backups_in(target)) == 3  # dump, roles, manifest
        assert all("/" not in n for n in backups_in(target))

        second = in_process(env).run("pg-backup")
        assert second.status == "ok", second.summary
        assert second.details["retention_deleted"] == {
            f"file://{target}": [first.details["backup"]]
        }
        verify = in_process(env).run("pg-backup-verify")
        assert verify.status == "ok", verify.summary
        assert verify.details["backup"] == second.details["backup"]
        assert verify.details["rows"] == sum(expected.values())
    finally:
        with pg_cluster.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{db.name}" WITH (FORCE)')


def test_a_database_name_with_a_slash_stays_under_the_s3_prefix(
    pg_cluster: Any, in_process: Any, moto: MotoServer
):
    from tests.fix_schema import create_actingweb_schema

    db = pg_cluster.create_database("../aw/" + secrets.token_hex(3))
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
    expected = fill(db)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-west-1")
    s3.create_bucket(
        Bucket="awops-names", CreateBucketConfiguration={"LocationConstraint": "us-west-1"}
    )
    env = db.awops_env(
        **moto.aws_env(),
        AWOPS_BACKUP_TARGET="s3://awops-names/pg",
        AWOPS_BACKUP_S3_ENDPOINT_URL=moto.url,
    )
    try:
        result = in_process(env).run("pg-backup")
        assert result.status == "ok", result.summary
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="awops-names")["Contents"]]
        assert len(keys) == 3  # dump, roles, manifest
        assert all(k.startswith("pg/") and "/" not in k[len("pg/") :] for k in keys), keys
        verify = in_process(env).run("pg-backup-verify")
        assert verify.status == "ok", verify.summary
        assert verify.details["rows"] == sum(expected.values())
    finally:
        with pg_cluster.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{db.name}" WITH (FORCE)')


# --- manifests that lie about their types ---------------------------------------------------


def restore_logging_wrapper(tmp_path: Path) -> tuple[Path, Path]:
    """A pg_restore that logs each call and then runs the real one."""
    log = tmp_path / "pg_restore_calls"
    script = tmp_path / "pg_restore_wrapper"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, shutil, sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv) + '\\n')\n"
        "real = '/usr/bin/pg_restore'\n"
        "os.execv(real, [real, *sys.argv[1:]])\n"
    )
    script.chmod(0o755)
    return script, log


def _set(field: str, value: Any) -> Any:
    def change(manifest: dict[str, Any]) -> Any:
        manifest[field] = value
        return manifest

    return change


def _string_counts(manifest: dict[str, Any]) -> Any:
    manifest["table_rows"] = {table: str(rows) for table, rows in manifest["table_rows"].items()}
    return manifest


MALFORMED = {
    "a string": (lambda _m: "hello", "expected a JSON object"),
    "null": (lambda _m: None, "expected a JSON object"),
    "string format_version": (_set("format_version", "1"), "'format_version'"),
    "string row counts": (_string_counts, "'table_rows'"),
    "string size": (_set("size_bytes", "12"), "'size_bytes'"),
    "no sha256": (lambda m: {k: v for k, v in m.items() if k != "sha256"}, "'sha256'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_manifest_is_a_problem_before_any_restore(
    aw_db: PgDatabase, tmp_path: Path, case: str
):
    fill(aw_db)
    target = tmp_path / "b"
    wrapper, restore_log = restore_logging_wrapper(tmp_path)
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(target), AWOPS_JOB_PG_BACKUP_VERIFY_PG_RESTORE=str(wrapper)
    )
    code, backup, stderr = awops_json("run-once", "pg-backup", env=env)
    assert code == 0, stderr
    manifest_file = target / f"{backup['details']['backup']}.manifest.json"
    change, field = MALFORMED[case]
    manifest_file.write_text(json.dumps(change(json.loads(manifest_file.read_text()))))

    code, verify, stderr = awops_json("run-once", "pg-backup-verify", env=env)
    assert code == 1, stderr
    assert verify["status"] == "problem"
    assert f"file://{manifest_file}" in verify["summary"]
    assert field in verify["summary"]
    assert not restore_log.exists(), "pg_restore ran"
    assert scratch_databases(aw_db) == []

    # pg-backup keeps it (nothing deleted on doubt), does not count it, and says so.
    code, again, stderr = awops_json("run-once", "pg-backup", env=env)
    assert code == 0, stderr
    assert manifest_file.exists()
    (messages,) = again["details"]["unreadable_manifests"].values()
    assert field in messages[0]


# --- target URLs ----------------------------------------------------------------------------


def test_a_file_target_with_two_slashes_is_a_config_error(aw_db: PgDatabase, tmp_path: Path):
    leaf = "awops-relative-" + secrets.token_hex(4)
    url = f"file://relative/{leaf}"
    try:
        result = run_awops("config", "--check", env=aw_db.awops_env(AWOPS_BACKUP_TARGET=url))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "AWOPS_BACKUP_TARGET" in result.stderr
        assert "must be absolute" in result.stderr

        config = tmp_path / "awops.toml"
        config.write_text(f'[backup]\ntargets = ["/var/backups/awops", "{url}"]\n')
        result = run_awops("run-once", "pg-backup", "--config", str(config), env=aw_db.awops_env())
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{config}: backup.targets" in result.stderr
        assert "Traceback" not in result.stderr

        result = run_awops(
            "run-once",
            "pg-backup-verify",
            env=aw_db.awops_env(
                AWOPS_BACKUP_TARGET=str(tmp_path / "b"), AWOPS_JOB_PG_BACKUP_VERIFY_TARGET=url
            ),
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "AWOPS_JOB_PG_BACKUP_VERIFY_TARGET" in result.stderr
        assert not Path("/" + leaf).exists()
    finally:
        for path in Path("/" + leaf).glob("*") if Path("/" + leaf).exists() else []:
            path.unlink()
        if Path("/" + leaf).exists():
            Path("/" + leaf).rmdir()


@pytest.mark.parametrize(
    "url",
    [
        "file://localhost/var/x",
        "file:relative",
        "relative/dir",
        "s3:///prefix",
        "file:///var/x#1",
        "s3://bucket/p?versionId=1",
    ],
)
def test_target_urls_that_name_no_safe_place_are_refused(url: str):
    result = run_awops(
        "config", "--check", env={"DATABASE_BACKEND": "postgresql", "AWOPS_BACKUP_TARGET": url}
    )
    assert result.returncode == 2, (url, result.stderr)
    assert "AWOPS_BACKUP_TARGET" in result.stderr

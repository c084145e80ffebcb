"""awops backups list / check / pin / unpin against real backups on a directory and moto's S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest

from awops.backup.names import backup_id
from awops.sizes import BINARY_UNITS, DECIMAL_UNITS, size_text
from tests.fix_awops import clean_environ, run_awops, wait_for
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase, free_port
from tests.test_pg_backup import fill

KEEP_ONLY_LAST = {
    "AWOPS_JOB_PG_BACKUP_KEEP_LAST": "1",
    "AWOPS_JOB_PG_BACKUP_KEEP_DAILY": "0",
    "AWOPS_JOB_PG_BACKUP_KEEP_WEEKLY": "0",
    "AWOPS_JOB_PG_BACKUP_KEEP_MONTHLY": "0",
}


def keygen(path: Path) -> str:
    made = subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, text=True)
    return made.stderr.split("Public key: ")[1].strip()


def awops_json(*args: str, env: Mapping[str, str], code: int = 0) -> dict[str, Any]:
    result = run_awops(*args, "--json", env=env)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def add_rows(db: PgDatabase, count: int) -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO properties SELECT gen_random_uuid()::text, 'n', 'v' "
            "FROM generate_series(1, %s) g",
            (count,),
        )


def s3_target(moto: MotoServer, bucket: str) -> tuple[str, dict[str, str]]:
    boto3.client("s3", endpoint_url=moto.url, region_name="us-west-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-1"}
    )
    return f"s3://{bucket}/pg", {**moto.aws_env(), "AWOPS_BACKUP_S3_ENDPOINT_URL": moto.url}


def read_object(url: str, name: str, moto: MotoServer | None) -> bytes:
    if url.startswith("s3://"):
        assert moto is not None
        bucket, _, prefix = url[len("s3://") :].partition("/")
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-west-1")
        return bytes(s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read())
    return Path(url.removeprefix("file://"), name).read_bytes()


@pytest.mark.parametrize("kind", ["file", "s3"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_list_and_check_round_trip(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path, request: Any, kind: str, encrypted: bool
):
    fill(aw_db)
    moto: MotoServer | None = None
    if kind == "s3":
        moto = request.getfixturevalue("moto")
        url, extra = s3_target(moto, "awops-list")
    else:
        url, extra = f"file://{tmp_path / 'b'}", {}
    key = tmp_path / "key.txt"
    if encrypted:
        extra["AWOPS_JOB_PG_BACKUP_RECIPIENTS"] = keygen(key)
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=url, **extra)
    runner = in_process(env)
    older = runner.run("pg-backup")
    assert older.status == "ok", older.summary
    add_rows(aw_db, 7)
    newer = runner.run("pg-backup")
    assert newer.status == "ok", newer.summary
    verify_env = {**env, "AWOPS_JOB_PG_BACKUP_VERIFY_IDENTITY_FILE": str(key)}
    assert in_process(verify_env).run("pg-backup-verify").status == "ok"
    # The backups commands never need the database: it is unreachable from here on.
    offline = {**env, "PG_DB_PORT": str(free_port())}

    listed = awops_json("backups", "list", env=offline)["backups"]

    assert [b["id"] for b in listed] == [newer.details["backup"], older.details["backup"]]
    newest, oldest = listed
    manifest = json.loads(read_object(url, f"{newest['id']}.manifest.json", moto))
    assert newest["created"].endswith("Z")
    assert newest["created"][:23] == manifest["snapshot_time"][:23]  # the server's clock
    assert newest["dated_by"] == "snapshot_time"
    assert (newest["size_bytes"], newest["sha256"]) == (manifest["size_bytes"], manifest["sha256"])
    assert newest["encrypted"] is encrypted and newest["complete"] is True
    assert newest["backend"] == "postgresql" and newest["target"] == url
    assert newest["database"] == aw_db.name and newest["pinned"] is False
    assert newest["verified"]["ok"] is True and newest["verified"]["at"].endswith("Z")
    assert oldest["verified"] is None
    assert newest["kept_by"] == ["last", "daily", "weekly", "monthly"]
    assert newest["globals"] == "ok" and newest["problems"] == []

    table = run_awops("backups", "list", env=offline)
    assert table.returncode == 0, table.stderr
    header, first, second = table.stdout.splitlines()
    assert header.split()[:3] == ["ID", "TARGET", "CREATED"]
    assert first.startswith(newer.details["backup"]) and "ok 20" in first
    assert second.startswith(older.details["backup"]) and "never" in second

    check_args = ["--identity", str(key)] if encrypted else []
    checked = awops_json("backups", "check", *check_args, env=offline)
    assert checked["ok"] is True
    assert sorted(b["id"] for b in checked["backups"]) == sorted(b["id"] for b in listed)
    assert all(b["ok"] and b["toc_entries"] > 20 and b["target"] == url for b in checked["backups"])
    latest = awops_json("backups", "check", "latest", *check_args, env=offline)
    assert [b["id"] for b in latest["backups"]] == [newer.details["backup"]]
    one = awops_json("backups", "check", older.details["backup"], *check_args, env=offline)
    assert [(b["id"], b["ok"]) for b in one["backups"]] == [(older.details["backup"], True)]

    pinned = run_awops("backups", "pin", older.details["backup"], env=offline)
    assert pinned.stdout.strip() == f"{older.details['backup']}: pinned on {url}"
    listed = awops_json("backups", "list", env=offline)["backups"]
    assert [(b["pinned"], b["kept_by"][-1]) for b in listed] == [
        (False, "monthly"),
        (True, "pinned"),
    ]
    unpinned = run_awops("backups", "unpin", older.details["backup"], env=offline)
    assert unpinned.stdout.strip() == f"{older.details['backup']}: unpinned on {url}"
    assert not any(b["pinned"] for b in awops_json("backups", "list", env=offline)["backups"])

    if encrypted:
        # Debian's age reads what awops wrote, dump and roles alike; pg_restore lists the dump.
        for name in (f"{newest['id']}.dump.age", manifest["globals"]["file"]):
            sealed = tmp_path / "sealed"
            sealed.write_bytes(read_object(url, name, moto))
            opened = subprocess.run(
                ["age", "-d", "-i", str(key), str(sealed)], capture_output=True, check=True
            ).stdout
            if name.endswith(".dump.age"):
                (tmp_path / "plain.dump").write_bytes(opened)
                toc = subprocess.run(
                    ["pg_restore", "--list", str(tmp_path / "plain.dump")],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                assert "TABLE DATA public attributes" in toc
            else:
                assert b"CREATE ROLE postgres;" in opened
        unkeyed = run_awops("backups", "check", "latest", env=offline)
        assert unkeyed.returncode == 1
        assert "pass --identity FILE" in unkeyed.stdout


def _backed_up(aw_db: PgDatabase, in_process: Any, target: Path, runs: int = 1) -> list[str]:
    fill(aw_db)
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    made = []
    for run in range(runs):
        add_rows(aw_db, run + 1)
        result = runner.run("pg-backup")
        assert result.status == "ok", result.summary
        made.append(result.details["backup"])
    return made


def test_check_names_a_flipped_byte(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    target = tmp_path / "b"
    good, damaged = _backed_up(aw_db, in_process, target, runs=2)
    dump = target / f"{damaged}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target))

    document = awops_json("backups", "check", env=env, code=1)

    assert document["ok"] is False
    results = {b["id"]: b for b in document["backups"]}
    assert results[good]["ok"] is True
    (problem,) = results[damaged]["problems"]
    assert f"{damaged}.dump: sha256 mismatch" in problem
    human = run_awops("backups", "check", damaged, env=env)
    assert human.returncode == 1
    assert "PROBLEM" in human.stdout and "sha256 mismatch" in human.stdout


def test_check_names_a_damaged_roles_object(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    target = tmp_path / "b"
    (backup,) = _backed_up(aw_db, in_process, target)
    roles = target / f"{backup}.globals.sql"
    roles.write_bytes(roles.read_bytes() + b"CREATE ROLE intruder SUPERUSER;\n")
    document = awops_json(
        "backups", "check", backup, env=aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)), code=1
    )
    (entry,) = document["backups"]
    assert entry["problems"] == [entry["problems"][0]]
    assert entry["problems"][0].startswith(f"roles: {backup}.globals.sql: size mismatch")


def test_incomplete_dumps_are_listed_as_incomplete_never_as_backups(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    target = tmp_path / "b"
    (backup,) = _backed_up(aw_db, in_process, target)
    orphan = backup_id(aw_db.name, 1796439600.0)  # 2026-12-05T03:00:00Z
    (target / f"{orphan}.dump").write_bytes(b"PGDMP" + bytes(100))
    lost = backup_id(aw_db.name, 1796439700.0)
    (target / f"{lost}.manifest.json").write_text("{}")
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target))

    listed = {b["id"]: b for b in awops_json("backups", "list", env=env)["backups"]}

    assert listed[backup]["complete"] is True
    assert listed[orphan]["complete"] is False
    assert listed[orphan]["size_bytes"] == 105 and listed[orphan]["dated_by"] == "name"
    assert listed[orphan]["created"] == "2026-12-05T03:00:00.000Z"
    assert "no manifest" in listed[orphan]["problems"][0]
    assert listed[lost]["complete"] is False
    assert "its dump is not" in listed[lost]["problems"][0]
    human = run_awops("backups", "list", env=env).stdout
    assert "INCOMPLETE: no manifest" in next(line for line in human.splitlines() if orphan in line)
    checked = awops_json("backups", "check", env=env)  # all: only complete backups are checked
    assert [b["id"] for b in checked["backups"]] == [backup]
    named = awops_json("backups", "check", orphan, env=env, code=1)
    assert named["backups"][0]["problems"] == ["no manifest: not a backup"]


def test_unreachable_targets_are_named_and_exit_1(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path, moto: MotoServer
):
    good = tmp_path / "good"
    _backed_up(aw_db, in_process, good)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    closed = f"http://127.0.0.1:{free_port()}"
    env = aw_db.awops_env(
        **moto.aws_env(),
        AWOPS_BACKUP_TARGET=f"s3://nowhere/pg,{blocked},{good}",
        AWOPS_BACKUP_S3_ENDPOINT_URL=closed,
        AWOPS_DYNAMODB_MAX_ATTEMPTS="1",
    )
    for command in (["list"], ["check"]):
        result = run_awops("backups", *command, "--json", env=env)
        assert result.returncode == 1, result.stderr
        document = json.loads(result.stdout)
        assert set(document["failed_targets"]) == {"s3://nowhere/pg", f"file://{blocked}"}
        assert "unreachable" in document["failed_targets"]["s3://nowhere/pg"]
        assert f"awops: file://{blocked}: " in result.stderr
        assert len(document["backups"]) == 1  # the good target is still read
    assert "testing" not in result.stdout + result.stderr  # no credential in any message


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["list", "--target", "file://relative/x"], "--target: expected"),
        (["list", "--backend", "dynamodb"], "the dynamodb backend is not configured"),
        (["check", "not-an-id"], "is not a backup id"),
        (["pin", "actingweb-2026"], "is not a backup id"),
        (["check", "--identity", "/nonexistent/key.txt"], "does not exist"),
    ],
)
def test_usage_errors_exit_2_before_touching_anything(tmp_path: Path, args: list[str], says: str):
    target = tmp_path / "never-created"
    env = {"DATABASE_BACKEND": "postgresql", "AWOPS_BACKUP_TARGET": str(target)}
    result = run_awops("backups", *args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr
    assert not target.exists()


def test_no_target_and_a_bad_identity_file_are_usage_errors(tmp_path: Path):
    env = {"DATABASE_BACKEND": "postgresql"}
    result = run_awops("backups", "list", env=env)
    assert result.returncode == 2
    assert "no backup target" in result.stderr
    garbage = tmp_path / "key.txt"
    garbage.write_text("not a key\n")
    env["AWOPS_BACKUP_TARGET"] = str(tmp_path / "b")
    env["AWOPS_JOB_PG_BACKUP_VERIFY_IDENTITY_FILE"] = str(garbage)
    result = run_awops("backups", "check", env=env)
    assert result.returncode == 2
    assert "[jobs.pg-backup-verify] identity_file" in result.stderr
    assert not (tmp_path / "b").exists()


def test_a_pinned_backup_survives_keep_last_1(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    first, second = tmp_path / "first", tmp_path / "second"
    fill(aw_db)
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=f"{first},{second}", **KEEP_ONLY_LAST)
    runner = in_process(env)
    pinned = runner.run("pg-backup").details["backup"]

    result = run_awops("backups", "pin", pinned, "--reason", "before the migration", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{pinned}: pinned on file://{first}",
        f"{pinned}: pinned on file://{second}",
    ]
    marker = json.loads((first / f"{pinned}.pin").read_text())
    assert marker["reason"] == "before the migration" and marker["pinned_at"].endswith("Z")
    again = run_awops("backups", "pin", pinned, "--target", str(second), env=env)
    assert again.stdout.strip() == f"{pinned}: already pinned on file://{second}"

    add_rows(aw_db, 3)
    dropped = runner.run("pg-backup")
    add_rows(aw_db, 3)
    newest = runner.run("pg-backup")
    assert newest.status == "ok", newest.summary
    # keep_last = 1: the backup in between goes; the pinned one stays on both targets.
    assert newest.details["retention_deleted"] == {
        f"file://{first}": [dropped.details["backup"]],
        f"file://{second}": [dropped.details["backup"]],
    }
    listed = awops_json("backups", "list", "--target", str(first), env=env)["backups"]
    assert [(b["id"], b["pinned"], b["kept_by"]) for b in listed] == [
        (newest.details["backup"], False, ["last"]),
        (pinned, True, ["pinned"]),
    ]

    assert run_awops("backups", "unpin", pinned, env=env).returncode == 0
    assert not (first / f"{pinned}.pin").exists()
    listed = awops_json("backups", "list", "--target", str(first), env=env)["backups"]
    assert listed[1]["kept_by"] == []  # the next backup's retention deletes it
    assert "(deleted next)" in run_awops("backups", "list", env=env).stdout
    add_rows(aw_db, 3)
    deleted = runner.run("pg-backup").details["retention_deleted"][f"file://{first}"]
    assert deleted == [pinned, newest.details["backup"]]
    assert not list(first.glob(f"{pinned}.*"))


def test_pin_of_a_backup_that_is_nowhere_exits_1(aw_db: PgDatabase, tmp_path: Path):
    (tmp_path / "b").mkdir()
    missing = backup_id(aw_db.name, 1796439600.0)
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(tmp_path / "b"))
    for command in ("pin", "unpin"):
        result = run_awops("backups", command, missing, env=env)
        assert result.returncode == 1
        assert f"no backup {missing} on the targets" in result.stderr
    assert list((tmp_path / "b").iterdir()) == []


def test_list_of_a_directory_holding_two_databases(
    pg_cluster: Any, in_process: Any, tmp_path: Path
):
    from tests.fix_schema import create_actingweb_schema

    target = tmp_path / "b"
    names = []
    for _ in range(2):
        db = pg_cluster.create_database()
        with db.connect(autocommit=True) as conn:
            create_actingweb_schema(conn)
        result = in_process(db.awops_env(AWOPS_BACKUP_TARGET=str(target))).run("pg-backup")
        assert result.status == "ok", result.summary
        names.append((result.details["backup"], db.name))
    env = clean_environ({"DATABASE_BACKEND": "postgresql", "AWOPS_BACKUP_TARGET": str(target)})
    listed = awops_json("backups", "list", env=env)["backups"]
    assert sorted((b["id"], b["database"]) for b in listed) == sorted(names)


def test_sigterm_stops_check_and_its_pg_restore(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    target = tmp_path / "b"
    _backed_up(aw_db, in_process, target)
    pid_file = tmp_path / "pg_restore.pid"
    slow = tmp_path / "slow_pg_restore"
    slow.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 300\n")
    slow.chmod(0o755)
    env = clean_environ(
        aw_db.awops_env(
            AWOPS_BACKUP_TARGET=str(target), AWOPS_JOB_PG_BACKUP_VERIFY_PG_RESTORE=str(slow)
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "awops", "backups", "check"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 60))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert "stopped by signal" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_sizes_read_in_binary_units_and_decimal_ones_on_the_status_page():
    assert size_text(1023) == "1023 B"
    assert size_text(1536) == "1.5 KiB"
    assert size_text(3 * 1024**3) == "3.0 GiB"
    assert size_text(2 * 1024**4) == "2.0 TiB"
    assert size_text(2 * 1024**4, units=BINARY_UNITS[:4]) == "2048.0 GiB"  # pg backups list
    assert size_text(999, step=1000, units=DECIMAL_UNITS) == "999 B"
    assert size_text(1536, step=1000, units=DECIMAL_UNITS) == "1.5 kB"
    assert size_text(3_377_699_720_527_872, step=1000, units=DECIMAL_UNITS) == "3377.7 TB"

"""pg-backup against a real cluster: local directory and moto's S3, encryption, failures."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3

from awops.backup.names import backup_id
from tests.fix_awops import clean_environ, run_awops
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase, free_port

ACTORS = 300
ATTRIBUTES = 500


def fill(db: PgDatabase, actors: int = ACTORS, attributes: int = ATTRIBUTES) -> dict[str, int]:
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actors SELECT 'a' || g, 'c' || (g %% 7), 'secret', now() "
            "FROM generate_series(1, %s) g",
            (actors,),
        )
        conn.execute(
            "INSERT INTO attributes SELECT 'a' || (g %% 50), 'b' || g, 'b', 'n', "
            "jsonb_build_object('v', g), now(), 1000 + g FROM generate_series(1, %s) g",
            (attributes,),
        )
        conn.execute("INSERT INTO properties VALUES ('a1', 'email', 'x@example.com')")
    return {"public.actors": actors, "public.attributes": attributes, "public.properties": 1}


def backups_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def fake_pg_dump(tmp_path: Path, body: str) -> Path:
    """A pg_dump stand-in: a Python script that gets the real pg_dump's argv and environment."""
    script = tmp_path / "pg_dump_wrapper"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, signal, subprocess, sys\n"
        f"REAL = {str(Path('/usr/bin/pg_dump'))!r}\n"
        f"LOG = {str(tmp_path / 'argv.json')!r}\n"
        "with open(LOG, 'a') as log: log.write(json.dumps(sys.argv) + '\\n')\n"
        "if '--version' in sys.argv: os.execv(REAL, [REAL, '--version'])\n" + body
    )
    script.chmod(0o755)
    return script


def test_backup_to_directory_then_verify(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    expected = fill(aw_db)
    target = tmp_path / "backups" / "nested"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=f"file://{target}")
    runner = in_process(env)

    result = runner.run("pg-backup")
    assert result.status == "ok", result.summary
    names = backups_in(target)
    assert len(names) == 3
    dump = next(n for n in names if n.endswith(".dump"))
    manifest_file = next(n for n in names if n.endswith(".manifest.json"))
    roles = next(n for n in names if n.endswith(".globals.sql"))
    for name in names:
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    manifest = json.loads((target / manifest_file).read_text())
    assert manifest["database"] == aw_db.name
    assert manifest["size_bytes"] == (target / dump).stat().st_size
    assert manifest["dump_file"] == dump
    assert manifest["server_version"].startswith("15")
    assert "pg_dump (PostgreSQL)" in manifest["pg_dump_version"]
    assert manifest["encryption"] == {"method": "none", "recipients": []}
    assert manifest["globals"]["file"] == roles
    assert manifest["globals"]["size_bytes"] == (target / roles).stat().st_size
    for table, rows in expected.items():
        assert manifest["table_rows"][table] == rows
    assert manifest["table_rows"]["public.trusts"] == 0
    labels = {"backend": "postgresql", "target": f"file://{target}"}
    assert runner.value("awops_backup_last_success_timestamp_seconds", **labels) > 0
    assert runner.value("awops_backup_size_bytes", **labels) == manifest["size_bytes"]
    assert runner.value("awops_backup_duration_seconds", **labels) > 0

    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    assert verify.details["rows"] == sum(expected.values())
    assert runner.value("awops_backup_verify_last_success_timestamp_seconds", **labels) > 0
    assert runner.value("awops_backup_restore_duration_seconds", **labels) > 0
    assert scratch_databases(aw_db) == []


def scratch_databases(db: PgDatabase) -> list[str]:
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'awops\\_verify\\_%'"
        ).fetchall()
    return [row[0] for row in rows]


def test_run_once_cli_json_and_password_stays_out_of_argv(aw_db: PgDatabase, tmp_path: Path):
    fill(aw_db)
    wrapper = fake_pg_dump(tmp_path, "os.execv(REAL, [REAL, *sys.argv[1:]])\n")
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(tmp_path / "b"), AWOPS_JOB_PG_BACKUP_PG_DUMP=str(wrapper)
    )
    result = run_awops("run-once", "pg-backup", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "ok"
    assert job["details"]["tables"] == 9
    argv_log = (tmp_path / "argv.json").read_text()
    assert "--snapshot=" in argv_log
    assert aw_db.cluster.password not in argv_log
    assert aw_db.cluster.password not in result.stdout + result.stderr


def test_pg_dump_killed_mid_stream_leaves_no_backup(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), AWOPS_JOB_PG_BACKUP_COMPRESS_LEVEL="0")
    runner = in_process(env)
    assert runner.run("pg-backup").status == "ok"
    labels = {"backend": "postgresql", "target": f"file://{target}"}
    good = runner.value("awops_backup_last_success_timestamp_seconds", **labels)
    before = backups_in(target)

    # Write part of the real dump, then die by SIGKILL, as an OOM kill would.
    wrapper = fake_pg_dump(
        tmp_path,
        "child = subprocess.Popen([REAL, *sys.argv[1:]], stdout=subprocess.PIPE)\n"
        "sys.stdout.buffer.write(child.stdout.read(20000)); sys.stdout.buffer.flush()\n"
        "child.kill(); os.kill(os.getpid(), signal.SIGKILL)\n",
    )
    killed = in_process({**env, "AWOPS_JOB_PG_BACKUP_PG_DUMP": str(wrapper)})
    killed.runner.metrics, killed.prometheus = runner.metrics, runner.prometheus
    result = killed.run("pg-backup")
    assert result.status == "error"
    assert "pg_dump failed" in result.summary
    assert backups_in(target) == before
    assert killed.value("awops_backup_last_success_timestamp_seconds", **labels) == good
    assert killed.value("awops_job_runs_total", job="pg-backup", status="error") == 1


def test_timeout_kills_a_blocked_pg_dump(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), AWOPS_JOB_PG_BACKUP_TIMEOUT_SECONDS="2")
    runner = in_process(env)
    with aw_db.connect() as locker:
        locker.execute("LOCK TABLE attributes IN ACCESS EXCLUSIVE MODE")
        result = runner.run("pg-backup")
        locker.rollback()
    assert result.status == "error"
    assert "timed out" in result.summary
    assert backups_in(target) == []
    with aw_db.connect() as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
            "pg_backend_pid() AND application_name = 'pg_dump'",
            (aw_db.name,),
        ).fetchone()
    assert waiting == (0,)


def test_client_older_than_server_fails_clearly(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    old = tmp_path / "old_pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 11.22'\n")
    old.chmod(0o755)
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(tmp_path / "b"), AWOPS_JOB_PG_BACKUP_PG_DUMP=str(old)
    )
    result = in_process(env).run("pg-backup")
    assert result.status == "error"
    assert "version 11 but the server is 15" in result.summary
    assert backups_in(tmp_path / "b") == []


def test_retention_after_success_and_dry_run(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    target = tmp_path / "b"
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(target),
        AWOPS_JOB_PG_BACKUP_KEEP_LAST="2",
        AWOPS_JOB_PG_BACKUP_KEEP_DAILY="0",
        AWOPS_JOB_PG_BACKUP_KEEP_WEEKLY="0",
        AWOPS_JOB_PG_BACKUP_KEEP_MONTHLY="0",
    )
    runner = in_process(env)
    first = runner.run("pg-backup")
    for _ in range(2):
        assert runner.run("pg-backup").status == "ok"
    manifests = [n for n in backups_in(target) if n.endswith(".manifest.json")]
    assert len(manifests) == 2
    assert not any(n.startswith(first.details["backup"]) for n in backups_in(target))

    strict = in_process({**env, "AWOPS_JOB_PG_BACKUP_KEEP_LAST": "1"})
    before = backups_in(target)
    dry = strict.run("pg-backup", dry_run=True)
    assert dry.status == "ok"
    (would_delete,) = dry.details["would_delete"].values()
    assert len(would_delete) == 1
    assert backups_in(target) == before


def test_dumps_left_without_a_manifest_are_removed_once_stale(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    target = tmp_path / "b"
    target.mkdir()
    now = time.time()
    old, recent = backup_id(aw_db.name, now - 2 * 86400), backup_id(aw_db.name, now - 3600)
    kept_backup = backup_id(aw_db.name, now - 3 * 86400)
    planted = {
        f"{old}.dump": False,  # a run died after committing its dump: removed
        f"{old}.dump.age": False,
        f"{recent}.dump": True,  # within a day: left (a run may still be writing its manifest)
        f"{backup_id(aw_db.name + '-eu', now - 2 * 86400)}.dump": True,  # another database's
        f"{kept_backup}.dump": True,  # has its manifest: a backup, retention's business
        f"{kept_backup}.manifest.json": True,
    }
    for name in planted:
        (target / name).write_bytes(b"x")
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    result = runner.run("pg-backup")
    assert result.status == "ok", result.summary
    present = set(backups_in(target))
    assert {name for name, stays in planted.items() if stays} <= present
    assert not {name for name, stays in planted.items() if not stays} & present


def _s3(moto: MotoServer) -> Any:
    return boto3.client("s3", endpoint_url=moto.url, region_name="us-west-1")


def test_s3_round_trip(aw_db: PgDatabase, in_process: Any, moto: MotoServer):
    expected = fill(aw_db)
    s3 = _s3(moto)
    s3.create_bucket(
        Bucket="awops-bk", CreateBucketConfiguration={"LocationConstraint": "us-west-1"}
    )
    env = aw_db.awops_env(
        **moto.aws_env(),
        AWOPS_BACKUP_TARGET="s3://awops-bk/pg/daily",
        AWOPS_BACKUP_S3_ENDPOINT_URL=moto.url,
        AWOPS_BACKUP_S3_SSE="AES256",
    )
    runner = in_process(env)
    result = runner.run("pg-backup")
    assert result.status == "ok", result.summary
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="awops-bk")["Contents"])
    assert [k.rsplit(".", 1)[-1] for k in keys] == ["dump", "sql", "json"]
    assert all(k.startswith(f"pg/daily/{aw_db.name}-") for k in keys)
    head = s3.head_object(Bucket="awops-bk", Key=keys[0])
    assert head["ServerSideEncryption"] == "AES256"
    manifest = json.loads(s3.get_object(Bucket="awops-bk", Key=keys[2])["Body"].read())
    assert manifest["size_bytes"] == head["ContentLength"]
    labels = {"backend": "postgresql", "target": "s3://awops-bk/pg/daily"}
    assert runner.value("awops_backup_size_bytes", **labels) == head["ContentLength"]

    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    assert verify.details["rows"] == sum(expected.values())
    assert scratch_databases(aw_db) == []


def test_encrypted_dump_restores_with_age_tool(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    expected = fill(aw_db)
    key = tmp_path / "key.txt"
    made = subprocess.run(["age-keygen", "-o", str(key)], capture_output=True, text=True)
    recipient = made.stderr.split("Public key: ")[1].strip()
    other_key = tmp_path / "other.txt"
    made = subprocess.run(["age-keygen", "-o", str(other_key)], capture_output=True, text=True)
    other = made.stderr.split("Public key: ")[1].strip()
    target = tmp_path / "b"
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(target),
        AWOPS_JOB_PG_BACKUP_RECIPIENTS=f"{recipient},{other}",
        AWOPS_JOB_PG_BACKUP_VERIFY_IDENTITY_FILE=str(other_key),
    )
    runner = in_process(env)
    result = runner.run("pg-backup")
    assert result.status == "ok", result.summary
    (encrypted,) = [p for p in target.iterdir() if p.name.endswith(".dump.age")]
    assert not encrypted.read_bytes().startswith(b"PGDMP")
    manifest = json.loads(next(target.glob("*.manifest.json")).read_text())
    assert manifest["encryption"] == {"method": "age", "recipients": [recipient, other]}

    plain = tmp_path / "plain.dump"
    subprocess.run(["age", "-d", "-i", str(key), "-o", str(plain), str(encrypted)], check=True)
    restored = aw_db.cluster.create_database()
    env_pg = {
        **clean_environ(),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(aw_db.cluster.port),
        "PGUSER": "postgres",
        "PGPASSWORD": aw_db.cluster.password,
    }
    subprocess.run(
        ["pg_restore", "--exit-on-error", "-d", restored.name, str(plain)],
        env=env_pg,
        check=True,
        capture_output=True,
    )
    with restored.connect() as conn:
        assert conn.execute("SELECT count(*) FROM attributes").fetchone() == (
            expected["public.attributes"],
        )

    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    assert verify.details["encrypted"] is True


class FlakyProxy:
    """A TCP proxy to moto that goes down for ``outage_seconds`` once ``trip_bytes`` passed."""

    def __init__(self, upstream_port: int, trip_bytes: int, outage_seconds: float) -> None:
        self.upstream_port = upstream_port
        self.trip_bytes = trip_bytes
        self.outage_seconds = outage_seconds
        self.forwarded = 0
        self.down = threading.Event()
        self.tripped = False
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counts: bool) -> None:
        try:
            while data := source.recv(65536):
                if self.down.is_set():
                    break
                sink.sendall(data)
                if counts:
                    self.forwarded += len(data)
                    if not self.tripped and self.forwarded > self.trip_bytes:
                        self._trip()
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _trip(self) -> None:
        self.tripped = True
        self.down.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        threading.Timer(self.outage_seconds, self.down.clear).start()

    def close(self) -> None:
        self._listener.close()


def test_s3_endpoint_down_mid_upload_aborts_the_multipart_upload(
    aw_db: PgDatabase, in_process: Any, moto: MotoServer
):
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes SELECT 'a', 'b' || g, 'b', repeat('n', 100), NULL, NULL, "
            "NULL FROM generate_series(1, 120000) g"
        )
    s3 = _s3(moto)
    s3.create_bucket(
        Bucket="awops-bk", CreateBucketConfiguration={"LocationConstraint": "us-west-1"}
    )
    upstream = int(moto.url.rsplit(":", 1)[1])
    proxy = FlakyProxy(upstream, trip_bytes=6 * 1024 * 1024, outage_seconds=2.0)
    try:
        env = aw_db.awops_env(
            **moto.aws_env(),
            AWOPS_BACKUP_TARGET="s3://awops-bk/pg",
            AWOPS_BACKUP_S3_ENDPOINT_URL=proxy.url,
            AWOPS_BACKUP_S3_PART_SIZE_BYTES=str(5 * 1024 * 1024),
            AWOPS_DYNAMODB_MAX_ATTEMPTS="1",
            AWOPS_JOB_PG_BACKUP_COMPRESS_LEVEL="0",
        )
        runner = in_process(env)
        result = runner.run("pg-backup")
    finally:
        proxy.close()
    assert proxy.tripped
    assert result.status == "error", result.summary
    assert "s3://awops-bk/pg" in result.summary
    assert s3.list_objects_v2(Bucket="awops-bk").get("Contents", []) == []
    assert s3.list_multipart_uploads(Bucket="awops-bk").get("Uploads", []) == []
    labels = {"backend": "postgresql", "target": "s3://awops-bk/pg"}
    assert runner.value("awops_backup_last_success_timestamp_seconds", **labels) is None


def test_one_failing_target_does_not_stop_the_other(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    good = tmp_path / "good"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=f"{blocked},{good}")
    runner = in_process(env)
    result = runner.run("pg-backup")
    assert result.status == "error"
    assert f"file://{blocked}" in result.summary
    assert len(backups_in(good)) == 3
    assert runner.value(
        "awops_backup_last_success_timestamp_seconds",
        backend="postgresql",
        target=f"file://{good}",
    )
    assert os.path.isfile(blocked)


def test_run_once_to_a_directory_imports_neither_boto3_nor_cryptography(
    aw_db: PgDatabase, tmp_path: Path
):
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['awops', 'run-once', 'pg-backup']\n"
        "try:\n"
        "    runpy.run_module('awops', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "roots = ('boto3', 'botocore', 'cryptography')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=clean_environ(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(tmp_path / "b"))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_bad_backup_settings_are_config_errors(tmp_path: Path):
    env = {"DATABASE_BACKEND": "postgresql", "AWOPS_BACKUP_TARGET": str(tmp_path)}
    for key, value in (
        ("AWOPS_JOB_PG_BACKUP_RECIPIENTS", "age1notakey"),
        ("AWOPS_BACKUP_S3_PART_SIZE_BYTES", "1024"),
        ("AWOPS_JOB_PG_BACKUP_VERIFY_TARGET", "ftp://host/x"),
    ):
        result = run_awops("config", "--check", env={**env, key: value})
        assert result.returncode == 2, (key, result.stderr)
        assert key in result.stderr

"""awops restore postgresql and its children: SIGTERM mid-restore, the password's way in."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fix_awops import clean_environ, wait_for
from tests.fix_pg import PgDatabase
from tests.test_pg_backup import fill
from tests.test_restore_postgresql import backup_env, database_exists, tables_of, take_backup


def slow_pg_restore(tmp_path: Path) -> Path:
    """A pg_restore that restores for real, then works on (a ``sleep`` grandchild of awops)
    as long index builds would; it records its argv, PGPASSWORD and the pids involved."""
    real = shutil.which("pg_restore")
    script = tmp_path / "pg_restore_slow"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, subprocess, sys\n"
        f"REAL = {real!r}\n"
        f"LOG = {str(tmp_path / 'calls.jsonl')!r}\n"
        f"PIDS = {str(tmp_path / 'pids.json')!r}\n"
        "with open(LOG, 'a') as log:\n"
        "    log.write(json.dumps({'argv': sys.argv,\n"
        "                          'password': os.environ.get('PGPASSWORD')}) + '\\n')\n"
        "if '--version' in sys.argv or '--list' in sys.argv:\n"
        "    os.execv(REAL, [REAL, *sys.argv[1:]])\n"
        "restored = subprocess.run([REAL, *sys.argv[1:]])\n"
        "sleeper = subprocess.Popen(['sleep', '600'])\n"
        "with open(PIDS + '.tmp', 'w') as out:\n"
        "    json.dump([os.getpid(), sleeper.pid, restored.returncode], out)\n"
        "os.rename(PIDS + '.tmp', PIDS)\n"
        "sleeper.wait()\n"
    )
    script.chmod(0o755)
    return script


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_mid_restore_leaves_no_database_and_no_child(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path, stop_signal: signal.Signals
):
    fill(aw_db)
    env = backup_env(aw_db, tmp_path, "file", False, None)
    take_backup(in_process, env)
    env["AWOPS_JOB_PG_BACKUP_VERIFY_PG_RESTORE"] = str(slow_pg_restore(tmp_path))
    name = f"{aw_db.name}_interrupted"

    awops = subprocess.Popen(
        [sys.executable, "-m", "awops", "restore", "postgresql", "--to-database", name, "--json"],
        env=clean_environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pids_file = tmp_path / "pids.json"
        wait_for(pids_file.exists, timeout=120, what="pg_restore to finish its part")
        wrapper, sleeper, restored = json.loads(pids_file.read_text())
        assert restored == 0
        # Mid-restore: the database is there, with the tables pg_restore wrote.
        assert "public.attributes" in tables_of(aw_db.cluster, name)
        assert alive(wrapper) and alive(sleeper)

        awops.send_signal(stop_signal)
        stdout, stderr = awops.communicate(timeout=60)
    finally:
        if awops.poll() is None:
            awops.kill()
            awops.wait()

    assert awops.returncode == 1, stderr
    document = json.loads(stdout)
    assert document["ok"] is False
    assert document["error"] == f"stopped by {stop_signal.name}"
    assert document["database_created"] is True and document["database_dropped"] is True
    assert not database_exists(aw_db.cluster, name)
    wait_for(lambda: not alive(wrapper) and not alive(sleeper), timeout=10, what="children gone")


def test_the_password_reaches_pg_restore_only_through_its_environment(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    env = backup_env(aw_db, tmp_path, "file", False, None)
    take_backup(in_process, env)
    recorder = tmp_path / "pg_restore_recorder"
    real = shutil.which("pg_restore")
    recorder.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(tmp_path / 'calls.jsonl')!r}, 'a') as log:\n"
        "    log.write(json.dumps({'argv': sys.argv,\n"
        "                          'password': os.environ.get('PGPASSWORD')}) + '\\n')\n"
        f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
    )
    recorder.chmod(0o755)
    env["AWOPS_JOB_PG_BACKUP_VERIFY_PG_RESTORE"] = str(recorder)
    password = aw_db.cluster.password
    name = f"{aw_db.name}_env"

    done = subprocess.run(
        [sys.executable, "-m", "awops", "restore", "postgresql", "--to-database", name],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    restores = [c for c in calls if "--list" not in c["argv"] and "--version" not in c["argv"]]
    (call,) = restores
    assert call["password"] == password
    assert not any(password in argument for argument in call["argv"])
    assert f"--dbname=dbname={name}" in call["argv"]
    assert "--no-owner" in call["argv"]
    assert f"--jobs={min(4, os.cpu_count() or 1)}" in call["argv"]
    assert password not in done.stdout + done.stderr
    assert os.environ.get("PGPASSWORD") != password  # nothing leaked into the test's own

"""``pgbackrest-restore-verify`` against Debian's real pgBackRest: the newest backup restored,
started as a temporary server, read, stopped and removed, also when awops is stopped or killed
in the middle."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from awops.actingweb import PG_TABLES
from awops.result import Status
from tests.fix_awops import clean_environ, wait_for
from tests.fix_pgbackrest import ALEMBIC_REVISION, SEED_ROWS, PgBackRestStanza, needs_pgbackrest

pytestmark = [needs_pgbackrest, pytest.mark.slow]


def verify_env(stanza: PgBackRestStanza, work_dir: Path, **extra: str) -> dict[str, str]:
    return stanza.awops_env(
        AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_ENABLED="true",
        AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_WORK_DIR=str(work_dir),
        **extra,
    )


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains ``text`` (zombies count as gone)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in command and state != "Z":
            found[int(entry.name)] = command
    return found


def test_restores_starts_and_reads_the_newest_backup(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    runner = in_process(verify_env(pgbackrest_stanza, work_dir))
    result = runner.run("pgbackrest-restore-verify")
    assert result.status is Status.OK, result.summary
    details = result.details
    expected_rows = {table: SEED_ROWS.get(table, 0) for table in PG_TABLES}
    assert details["tables"] == expected_rows
    assert details["missing_tables"] == []
    assert details["alembic_revision"] == ALEMBIC_REVISION
    assert details["backup_type"] == "full"
    assert details["repo"] == "repo1"
    assert details["postgresql_version"] == "15"
    assert details["rto_seconds"] >= details["restore_seconds"] > 0
    assert details["recovery_seconds"] > 0
    assert f"{sum(SEED_ROWS.values())} rows in 9 ActingWeb tables" in result.summary
    assert f"Alembic revision {ALEMBIC_REVISION}" in result.summary

    stanza = {"stanza": pgbackrest_stanza.name}
    assert runner.value("awops_pgbackrest_restore_duration_seconds", **stanza) == pytest.approx(
        details["rto_seconds"], abs=0.01
    )
    assert runner.value("awops_pgbackrest_restore_verify_last_success_timestamp_seconds", **stanza)
    assert runner.value("awops_pgbackrest_restored_table_rows", **stanza, table="actors") == 3
    shared = {"backend": "pgbackrest", "target": pgbackrest_stanza.name}
    assert runner.value("awops_backup_verify_last_success_timestamp_seconds", **shared)
    assert runner.value("awops_backup_restore_duration_seconds", **shared) > 0

    # The server is stopped and its directory gone.
    assert list(work_dir.iterdir()) == []
    assert processes_mentioning(str(work_dir)) == {}


def test_an_unexpected_alembic_revision_is_a_problem(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    env = verify_env(
        pgbackrest_stanza,
        work_dir,
        AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_EXPECTED_ALEMBIC_REVISION="ffffffffffff",
    )
    result = in_process(env).run("pgbackrest-restore-verify")
    assert result.status is Status.PROBLEM
    assert f"Alembic revision is {ALEMBIC_REVISION}, expected ffffffffffff" in result.summary
    assert list(work_dir.iterdir()) == []
    assert processes_mentioning(str(work_dir)) == {}


def test_a_database_missing_from_the_backup_is_a_problem(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    env = verify_env(
        pgbackrest_stanza, work_dir, AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_DATABASE="not_backed_up"
    )
    result = in_process(env).run("pgbackrest-restore-verify")
    assert result.status is Status.PROBLEM
    assert "cannot connect to not_backed_up" in result.summary
    assert 'database "not_backed_up" does not exist' in result.summary
    assert list(work_dir.iterdir()) == []


def test_a_server_that_cannot_start_is_a_problem_and_is_cleaned_up(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    env = verify_env(
        pgbackrest_stanza,
        work_dir,
        AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_SERVER_SETTINGS="shared_preload_libraries=no_such_lib",
    )
    result = in_process(env).run("pgbackrest-restore-verify")
    assert result.status is Status.PROBLEM
    assert "the restored server exited" in result.summary
    assert "no_such_lib" in result.summary
    assert list(work_dir.iterdir()) == []
    assert processes_mentioning(str(work_dir)) == {}


def test_a_deep_work_dir_gets_its_socket_elsewhere_and_both_are_removed(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    # Too deep for a Unix socket path (107 bytes) under the scratch directory.
    work_dir = pgbackrest_stanza.work_dir("a-work-directory-deep-enough-" + "x" * 40)
    sockets_before = set(Path(tempfile.gettempdir()).glob("awops-pgbr-socket-*"))
    result = in_process(verify_env(pgbackrest_stanza, work_dir)).run("pgbackrest-restore-verify")
    assert result.status is Status.OK, result.summary
    assert list(work_dir.iterdir()) == []
    assert set(Path(tempfile.gettempdir()).glob("awops-pgbr-socket-*")) == sockets_before


def test_stale_scratch_directories_are_removed_and_live_ones_kept(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    dead_pid = 4_000_000  # above pid_max: no such process
    crashed = work_dir / f"awops-pgbr-verify-20260101T000000Z-{dead_pid}-0badc0de"
    (crashed / "data").mkdir(parents=True)
    (crashed / "data" / "PG_VERSION").write_text("15\n")
    # Its socket lived outside it (a deep work_dir); the pointer says where.
    crashed_socket = Path(tempfile.mkdtemp(prefix="awops-pgbr-socket-"))
    (crashed / "socket-dir").write_text(str(crashed_socket))
    other = subprocess.Popen(["sleep", "120"])
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    running = work_dir / f"awops-pgbr-verify-{stamp}-{other.pid}-12345678"
    running.mkdir()
    unrelated = work_dir / "keep-me"
    unrelated.mkdir()
    try:
        result = in_process(verify_env(pgbackrest_stanza, work_dir)).run(
            "pgbackrest-restore-verify"
        )
    finally:
        other.kill()
        other.wait()
    assert result.status is Status.OK, result.summary
    assert result.details["removed_stale"] == [crashed.name]
    assert not crashed_socket.exists()
    assert sorted(path.name for path in work_dir.iterdir()) == sorted(
        [running.name, unrelated.name]
    )
    running.rmdir()
    unrelated.rmdir()


def start_run_once(stanza: PgBackRestStanza, work_dir: Path, marker: str, log: Path) -> Any:
    """run-once whose temporary server waits in recovery: its restore_command sleeps."""
    setting = f"restore_command=sleep 60; echo {marker}"
    env = verify_env(stanza, work_dir, AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_SERVER_SETTINGS=setting)
    return subprocess.Popen(
        [sys.executable, "-m", "awops", "run-once", "pgbackrest-restore-verify", "--json"],
        env=clean_environ(env),
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def wait_for_server(work_dir: Path, marker: str) -> tuple[Path, int]:
    """The scratch directory and the postmaster's pid, once recovery waits on the marker."""
    scratch = wait_for(lambda: next(work_dir.glob("awops-pgbr-verify-*"), None), 120, "scratch")
    pid_file = scratch / "data" / "postmaster.pid"

    def postmaster_pid() -> int | None:
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, IndexError, ValueError):  # not there yet, or being written
            return None

    postmaster = wait_for(postmaster_pid, 120, "postmaster")
    wait_for(lambda: processes_mentioning(marker), 60, "restore_command running")
    return scratch, postmaster


def test_sigterm_mid_verify_leaves_no_process_and_no_directory(
    pgbackrest_stanza: PgBackRestStanza, tmp_path: Path
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    marker = f"awops-marker-{secrets.token_hex(6)}"
    awops = start_run_once(pgbackrest_stanza, work_dir, marker, tmp_path / "awops.log")
    try:
        scratch, postmaster = wait_for_server(work_dir, marker)
        assert processes_mentioning(str(scratch))
        awops.send_signal(signal.SIGTERM)
        out, _ = awops.communicate(timeout=60)
    finally:
        if awops.poll() is None:
            awops.kill()
            awops.wait()
    assert awops.returncode == 1, (tmp_path / "awops.log").read_text()
    (job,) = json.loads(out)["jobs"]
    assert job["status"] == "error"
    assert "stopped" in job["summary"]
    assert not Path(f"/proc/{postmaster}").exists()
    assert processes_mentioning(str(scratch)) == {}
    assert processes_mentioning(marker) == {}
    assert not scratch.exists()


def test_after_a_crash_the_server_dies_with_awops_and_the_next_run_cleans_up(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any, tmp_path: Path
) -> None:
    work_dir = pgbackrest_stanza.work_dir()
    marker = f"awops-marker-{secrets.token_hex(6)}"
    awops = start_run_once(pgbackrest_stanza, work_dir, marker, tmp_path / "awops.log")
    try:
        scratch, postmaster = wait_for_server(work_dir, marker)
        awops.kill()  # SIGKILL: no finally, no cleanup of its own
        awops.wait()
        # The postmaster got its parent-death signal and shut down.
        wait_for(lambda: processes_mentioning(str(scratch)) == {}, 60, "the postmaster to die")
        assert scratch.exists()
        result = in_process(verify_env(pgbackrest_stanza, work_dir)).run(
            "pgbackrest-restore-verify"
        )
    finally:
        for pid in processes_mentioning(marker):  # the restore_command's sleep, orphaned
            os.kill(pid, signal.SIGKILL)
    assert result.status is Status.OK, result.summary
    assert result.details["removed_stale"] == [scratch.name]
    assert list(work_dir.iterdir()) == []
    assert not Path(f"/proc/{postmaster}").exists()


def test_without_a_stanza_it_is_an_error_naming_both_keys(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    env = verify_env(pgbackrest_stanza, pgbackrest_stanza.work_dir())
    del env["AWOPS_JOB_PGBACKREST_STANZA"]
    result = in_process(env).run("pgbackrest-restore-verify")
    assert result.status is Status.ERROR
    assert "set jobs.pgbackrest-restore-verify.stanza or jobs.pgbackrest.stanza" in result.summary

"""Children of the pgBackRest jobs: stopped with their whole process group, killed with awops,
run as the server's user when awops is root, and given no secrets."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from awops.errors import JobInterrupted
from awops.pgbackrest import process
from awops.pgbackrest.errors import ChildTimeout
from tests.fix_awops import wait_for


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def grandchild_command(pid_file: Path) -> list[str]:
    """A shell that starts a background sleep (a grandchild) and waits."""
    return ["sh", "-c", f"sleep 120 & echo $! > {pid_file}; wait"]


def test_a_stop_request_kills_the_child_and_what_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            process.run(
                grandchild_command(pid_file),
                env=process.child_environment(),
                run_as=None,
                stop_requested=stop.is_set,
                timeout_seconds=60,
                what="the test command",
                timeout_option="jobs.x.timeout",
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    grandchild = wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(errors[0], JobInterrupted)
    wait_for(lambda: not alive(int(grandchild)), 10, "the grandchild to die")


def test_a_child_past_its_timeout_is_killed_and_names_the_option(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    with pytest.raises(ChildTimeout, match=r"within 0.5 s \(jobs.x.command_timeout_seconds\)"):
        process.run(
            grandchild_command(pid_file),
            env=process.child_environment(),
            run_as=None,
            stop_requested=lambda: False,
            timeout_seconds=0.5,
            what="the test command",
            timeout_option="jobs.x.command_timeout_seconds",
        )
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
    wait_for(lambda: not alive(int(pid_file.read_text())), 10, "the grandchild to die")


def test_a_child_dies_when_awops_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    # A stand-in for awops: starts a child through awops' code, then waits to be killed.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from awops.pgbackrest.process import child_environment, run\n"
            f"run(['sh', '-c', 'echo $$ > {pid_file}; exec sleep 120'],"
            " env=child_environment(), run_as=None, stop_requested=lambda: False,"
            " timeout_seconds=300, what='sleep', timeout_option='x')\n",
        ]
    )
    try:
        child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30))
        assert alive(child)
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(child), 10, "the child to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_children_get_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_DB_PASSWORD", "application-secret")
    monkeypatch.setenv("PGPASSWORD", "libpq-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL", "https://hooks.invalid/x")
    monkeypatch.setenv("PGBACKREST_REPO1_CIPHER_PASS", "for-pgbackrest")
    env = process.child_environment()
    assert "PG_DB_PASSWORD" not in env
    assert "PGPASSWORD" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "AWOPS_NOTIFICATIONS_FAILURE_WEBHOOK_URL" not in env
    assert env["PGBACKREST_REPO1_CIPHER_PASS"] == "for-pgbackrest"
    assert env["PATH"] == os.environ["PATH"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_as_root_children_run_as_the_server_user() -> None:
    run_as = process.run_as_for("postgres")
    assert run_as is not None
    result = process.run(
        ["id", "-un"],
        env=process.child_environment(run_as),
        run_as=run_as,
        stop_requested=lambda: False,
        timeout_seconds=30,
        what="id",
        timeout_option="x",
    )
    assert result.stdout.strip() == "postgres"
    assert pwd.getpwnam("postgres").pw_uid == run_as.uid


def test_root_is_refused_as_server_user() -> None:
    with pytest.raises(process.PgBackRestError, match="PostgreSQL refuses to run as root"):
        process.RunAs.lookup("root")
    with pytest.raises(process.PgBackRestError, match="does not exist"):
        process.RunAs.lookup("no-such-user-" + str(time.time_ns()))

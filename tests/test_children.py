"""awops.children: programs that never outlive awops, checked by pid in /proc."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from awops.children import spawn
from tests.faults._helpers import alive, descendant_pids
from tests.fix_awops import clean_environ, wait_for

# A program with forks of its own, as pg_restore --jobs has.
FORKS = "sleep 300 & sleep 300 & wait"


def test_exit_status_and_output_are_the_programs():
    with spawn(["sh", "-c", "echo out; echo err >&2; exit 3"], stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdout.read() == b"out\n"
        assert child.wait() == 3
    with spawn(["sh", "-c", "kill -KILL $$"]) as child:
        assert child.wait() == -signal.SIGKILL
    assert not child.stopped


def test_a_program_that_is_not_there_raises_as_popen_would():
    with pytest.raises(FileNotFoundError, match="no-such-program"):
        spawn(["no-such-program-awops"])


def test_terminate_ends_the_whole_group_and_kills_what_ignores_sigterm():
    with spawn(["sh", "-c", f"trap '' TERM; {FORKS}"]) as child:
        wait_for(lambda: len(descendant_pids(child.pid)) == 3, what="the forks")  # sh, 2 sleeps
        pids = [child.pid, *descendant_pids(child.pid)]
        assert child.terminate(grace_seconds=0.5) == -signal.SIGKILL
        assert child.stopped
    assert alive(pids) == []


def test_what_a_program_leaves_behind_when_it_ends_is_killed():
    with spawn(["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        left_behind = int(child.stdout.readline())
        assert child.wait() == 0
    assert alive([left_behind]) == []


def test_run_terminates_the_program_once_a_stop_is_requested():
    stop = threading.Event()
    with spawn(["sh", "-c", FORKS]) as child:
        wait_for(lambda: len(descendant_pids(child.pid)) == 3, what="the forks")
        pids = [child.pid, *descendant_pids(child.pid)]
        threading.Timer(0.3, stop.set).start()
        assert child.run(stop.is_set) < 0
        assert child.stopped
    assert alive(pids) == []


def test_kill_from_another_thread_ends_a_wait():
    with spawn(["sh", "-c", FORKS]) as child:
        wait_for(lambda: len(descendant_pids(child.pid)) == 3, what="the forks")
        pids = [child.pid, *descendant_pids(child.pid)]
        threading.Timer(0.3, child.kill).start()
        assert child.wait() == -signal.SIGKILL
    assert alive(pids) == []


# A parent that starts the program from a thread, as a job does, and then dies.
PARENT = f"""
import os, sys, threading, time
from awops.children import spawn
def job():
    child = spawn(["sh", "-c", {FORKS!r}])
    print(child.pid, flush=True)
    child.wait()
threading.Thread(target=job, daemon=True).start()
if sys.argv[1] == "exit":
    time.sleep(2)
    os._exit(0)
time.sleep(300)
"""


@pytest.mark.parametrize("death", ["SIGKILL", "exit"])
def test_children_die_with_their_parent_however_it_dies(death: str):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, death],
        env=clean_environ(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        guard = int(parent.stdout.readline())
        wait_for(lambda: len(descendant_pids(guard)) == 3, what="the forks")
        pids = [guard, *descendant_pids(guard)]
        if death == "SIGKILL":
            parent.send_signal(signal.SIGKILL)
        parent.wait(30)
    finally:
        if parent.poll() is None:
            parent.kill()
    wait_for(lambda: alive(pids) == [], 30, f"{pids} to die with their parent")


def test_send_signal_reaches_the_group_and_only_stop_signals_pass() -> None:
    with spawn(["sh", "-c", "trap 'exit 7' QUIT; while :; do sleep 0.1; done"]) as child:
        wait_for(lambda: descendant_pids(child.pid), what="the program")
        child.send_signal(signal.SIGQUIT)
        assert child.wait(30) == 7
        with pytest.raises(ValueError, match="SIGQUIT"):
            child.send_signal(signal.SIGUSR1)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_program_runs_as_the_user_given_and_the_guard_can_still_stop_it() -> None:
    entry = pwd.getpwnam("nobody")
    user = SimpleNamespace(uid=entry.pw_uid, gid=entry.pw_gid, groups=(entry.pw_gid,))
    with spawn(["id", "-u"], stdout=subprocess.PIPE, user=user) as child:
        assert child.stdout is not None
        assert child.stdout.read().strip() == str(entry.pw_uid).encode()
    with spawn(["sh", "-c", FORKS], user=user) as child:
        wait_for(lambda: len(descendant_pids(child.pid)) == 3, what="the forks")
        pids = [child.pid, *descendant_pids(child.pid)]
        child.terminate(grace_seconds=5)
    wait_for(lambda: alive(pids) == [], 30, f"{pids} to die")


DEATH_SIGNAL_PARENT = """
import signal, sys, time
from awops.children import spawn
child = spawn(["sh", "-c", "trap 'echo quit > " + sys.argv[1] + "; exit 0' QUIT; "
               "while :; do sleep 0.1; done"], death_signal=signal.SIGQUIT)
print(child.pid, flush=True)
time.sleep(300)
"""


def test_the_death_signal_comes_first_when_awops_dies(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    parent = subprocess.Popen(
        [sys.executable, "-c", DEATH_SIGNAL_PARENT, str(marker)],
        env=clean_environ(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        guard = int(parent.stdout.readline())
        wait_for(lambda: descendant_pids(guard), what="the program")
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
    finally:
        if parent.poll() is None:
            parent.kill()
    # The program had the chance to stop its own children: it ran its SIGQUIT handler.
    wait_for(lambda: marker.exists() and marker.read_text() == "quit\n", 30, "the handler")
    wait_for(lambda: alive([guard]) == [], 30, "the guard to end")

"""The guard between awops and a program it runs; executed as a script, see :mod:`awops.children`.

``python -I -S _child_guard.py LEASH_FD [OPTION ...] -- PROGRAM [ARG ...]`` starts PROGRAM in a
process group of its own and stays its parent until it ends:

* SIGTERM, SIGINT or SIGQUIT to the guard is passed on to the program's group;
* end of file on LEASH_FD kills the group with SIGKILL. awops holds the only write end of that
  pipe, and the kernel closes it when awops exits however it exits (SIGKILL and the OOM killer
  included), so the program and every process it forked (pg_restore's parallel workers) die
  with awops. awops also closes it on purpose: that is its hard stop;
* when the program ends, whatever is left of its group is killed, and as a child subreaper
  (Linux) the guard reaps what the program left behind, so nothing lands on init, or on awops
  when awops is PID 1 in a container;
* the guard exits with the program's status, a death by signal as the same signal.

Options: ``--user=UID:GID:GROUP,...`` runs the program under those ids (the guard stays as it
is, to kill and reap); ``--death-signal=N`` is sent to the group first on end of file, and to
the program should the guard die, for a program that must stop its own children (a
postmaster's, each in a session of its own, go with an immediate shutdown, SIGQUIT); SIGKILL
follows ``_DEATH_GRACE_SECONDS`` later if the program is still there.

It imports nothing from awops and runs with ``-I -S``: it starts in milliseconds and no
environment variable or site directory can change what it does.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from types import FrameType

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_SUPERVISE_POLL_SECONDS = 1.0
_ORPHAN_REAP_SECONDS = 5.0
_EXEC_FAILED = 127
_DEATH_GRACE_SECONDS = 10.0
_PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class _Options:
    """What the options before ``--`` ask for."""

    def __init__(self, words: list[str]) -> None:
        self.user: tuple[int, int, list[int]] | None = None
        self.death_signal = int(signal.SIGKILL)
        for word in words:
            name, _, value = word.partition("=")
            if name == "--user":
                uid, gid, groups = value.split(":")
                self.user = (int(uid), int(gid), [int(g) for g in groups.split(",") if g])
            elif name == "--death-signal":
                self.death_signal = int(value)
            else:
                raise SystemExit(f"awops guard: unknown option {word!r}")


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _exec_program(command: list[str], leash_fd: int, guard_pid: int, options: _Options) -> None:
    """In the forked child: a group of its own, default signal dispositions, its user, then
    exec."""
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for signum in (*_PASSED_ON, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        # Python ignores these and an ignored signal stays ignored across exec.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        if options.user is not None:
            # os.execvp imports warnings to search PATH, and under the new user the standard
            # library may be unreadable (a Python installed under /root): import it first.
            import warnings  # noqa: F401

            uid, gid, groups = options.user
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
        # Should the guard itself be killed, the program follows (its forks do not inherit
        # this; the group kill above covers them whenever the guard lives to do it). Set after
        # the change of user, which clears it.
        _prctl(_PR_SET_PDEATHSIG, options.death_signal)
        if os.getppid() != guard_pid:
            os._exit(_EXEC_FAILED)
        os.close(leash_fd)
        os.execvp(command[0], command)
    except BaseException as exc:  # nothing may escape: this is a fork of the guard
        with contextlib.suppress(OSError):
            os.write(2, f"awops: cannot run {command[0]}: {exc}\n".encode(errors="replace"))
    os._exit(_EXEC_FAILED)


def _supervise(pid: int, leash_fd: int, wake_fd: int, pending: list[int], death_signal: int) -> int:
    """Wait for the program, passing on stop signals; its wait status once it has ended."""
    watched = [leash_fd, wake_fd]
    kill_at: float | None = None  # after the death signal, SIGKILL at this time
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if kill_at is not None and time.monotonic() >= kill_at:
            _kill_group(pid, signal.SIGKILL)
            kill_at = None
        readable, _, _ = select.select(watched, [], [], _SUPERVISE_POLL_SECONDS)
        if wake_fd in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_fd, 512):
                    pass
        while pending:
            _kill_group(pid, pending.pop())
        if leash_fd in readable and not os.read(leash_fd, 512):
            _kill_group(pid, death_signal)
            if death_signal != signal.SIGKILL:
                kill_at = time.monotonic() + _DEATH_GRACE_SECONDS
            watched.remove(leash_fd)
    # Whatever the program left in its group goes with it. Safe before the reap: the program's
    # zombie still holds its pid, so the group id cannot have been given to anyone else.
    _kill_group(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def _reap_orphans() -> None:
    """Reap what was re-parented to the guard (the program's forks), for a bounded time."""
    deadline = time.monotonic() + _ORPHAN_REAP_SECONDS
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def _exit_like(status: int) -> None:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.set_wakeup_fd(-1)
        with contextlib.suppress(ValueError, OSError):  # SIGKILL's cannot be set, nor need be
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(ImportError, ValueError, OSError):
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), -code)
        code = 128 - code  # only if that signal did not end the guard
    os._exit(code)


def main(argv: list[str]) -> None:
    leash_fd = int(argv[1])
    end = argv.index("--", 2)
    options, command = _Options(argv[2:end]), argv[end + 1 :]
    pending: list[int] = []

    def pass_on(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in _PASSED_ON:
        signal.signal(signum, pass_on)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    guard_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        _exec_program(command, leash_fd, guard_pid, options)
    with contextlib.suppress(OSError):  # the child may have exec'd already: it did it itself
        os.setpgid(pid, pid)
    # The program's stdout reaches end of file when the program ends, not when the guard does.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    status = _supervise(pid, leash_fd, wake_read, pending, options.death_signal)
    _reap_orphans()
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv)

"""Child processes that never outlive awops: pg_dump, pg_restore, any program awops runs.

:func:`spawn` starts the program under a small guard (``awops/_child_guard.py``, a separate
Python process started with ``-I -S``) that puts it in a process group of its own and stays its
parent. awops keeps the only write end of a pipe the guard reads, the *leash*. When awops exits,
however it exits (SIGKILL, the OOM killer, a crash), the kernel closes the leash and the guard
SIGKILLs the program's whole group, pg_restore's parallel workers included, and reaps it; so
nothing is re-parented to init and left writing into a database.

Why not ``PR_SET_PDEATHSIG`` set in ``preexec_fn``: ``preexec_fn`` is unsafe in a process with
threads (awops runs every job in a thread), the signal fires when the *thread* that forked the
child ends rather than the process, and it is not inherited by the program's own forks. The
guard sets it only on the program, from its own single thread, as a second line should the
guard itself be killed.

How a caller stops a child:

* :meth:`ChildProcess.terminate`: SIGTERM to the program's group (pg_dump and pg_restore cancel
  their queries on it), SIGKILL after a grace; reaped when it returns;
* :meth:`ChildProcess.kill`: SIGKILL to the group at once, without waiting; safe from any thread,
  so it is what a job registers with ``JobContext.on_cancel``;
* :meth:`ChildProcess.run`: wait for the end, terminating the child once ``should_stop()`` says
  so;
* :meth:`ChildProcess.send_signal`: SIGTERM, SIGINT or SIGQUIT to the program's group, without
  waiting (SIGQUIT: a postmaster's immediate shutdown);
* leaving ``with spawn(...) as child:`` terminates a child still running and reaps it.

``spawn(..., user=...)`` runs the program under another user's ids (awops as root starting a
PostgreSQL server, which refuses root); ``death_signal`` is what the guard sends first when
awops dies, for a program that must stop its own children (SIGKILL follows).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

logger = logging.getLogger(__name__)

TERMINATE_GRACE_SECONDS = 5.0
# After the hard stop the guard needs only to reap; should it be wedged, it is killed itself.
_KILL_WAIT_SECONDS = 10.0
_STOP_POLL_SECONDS = 0.2
_GUARD = str(Path(__file__).with_name("_child_guard.py"))

# What Popen accepts for stdin, stdout and stderr.
Redirect = int | IO[Any] | None


class UserIds(Protocol):
    """The ids a program runs under: user, primary group, supplementary groups."""

    @property
    def uid(self) -> int: ...

    @property
    def gid(self) -> int: ...

    @property
    def groups(self) -> tuple[int, ...]: ...


class ChildProcess:
    """A program started by :func:`spawn`; its group dies with awops."""

    def __init__(self, popen: subprocess.Popen[bytes], leash_fd: int, command: list[str]) -> None:
        self._popen = popen
        self._leash_fd = leash_fd
        self._lock = threading.Lock()
        self.command = command
        self.stopped = False  # terminate() or kill() reached it while it ran

    @property
    def pid(self) -> int:
        """The guard's pid: the program is its child, in a process group of its own."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The program's exit status once reaped (negative: the signal that ended it)."""
        return self._popen.returncode

    @property
    def stdout(self) -> IO[bytes] | None:
        return self._popen.stdout

    def wait(self, timeout_seconds: float | None = None) -> int | None:
        """The exit status once the program has ended and been reaped; None on timeout."""
        try:
            code = self._popen.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            return None
        self._release_leash()
        return code

    def run(
        self,
        should_stop: Callable[[], bool],
        grace_seconds: float = TERMINATE_GRACE_SECONDS,
    ) -> int:
        """Wait for the end; once ``should_stop()`` is true, :meth:`terminate` instead."""
        while True:
            code = self.wait(_STOP_POLL_SECONDS)
            if code is not None:
                return code
            if should_stop():
                logger.warning("stop requested: stopping %s", self._name)
                return self.terminate(grace_seconds)

    def terminate(self, grace_seconds: float = TERMINATE_GRACE_SECONDS) -> int:
        """SIGTERM to the program's group, SIGKILL after ``grace_seconds``; reaped on return."""
        if self._popen.returncode is None:
            self.stopped = True
            self._signal_guard(signal.SIGTERM)
            if self.wait(grace_seconds) is None:
                logger.warning(
                    "%s still running %gs after SIGTERM; killing it", self._name, grace_seconds
                )
                self.kill()
        return self._reap_after_kill()

    def send_signal(self, signum: int) -> None:
        """Send SIGTERM, SIGINT or SIGQUIT to the program's group (the guard passes these on),
        without waiting."""
        if signum not in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            raise ValueError(f"the guard passes on SIGTERM, SIGINT and SIGQUIT, not {signum}")
        if self._popen.returncode is None:
            self._signal_guard(signum)

    def kill(self) -> None:
        """SIGKILL the program's group now, without waiting; safe from any thread."""
        if self._popen.returncode is None:
            self.stopped = True
        self._release_leash()  # the guard kills the group on end of file

    def close(self) -> None:
        """Terminate the program if it still runs, and reap it."""
        if self._popen.returncode is None:
            self.terminate()
        self._release_leash()
        if self._popen.stdout is not None:
            self._popen.stdout.close()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _name(self) -> str:
        return Path(self.command[0]).name

    def _signal_guard(self, signum: int) -> None:
        # Popen checks the guard is not reaped yet: its pid cannot belong to another process.
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(signum)

    def _reap_after_kill(self) -> int:
        code = self.wait(_KILL_WAIT_SECONDS)
        if code is None:
            logger.error("the guard of %s did not end after a kill; killing it", self._name)
            self._popen.kill()
            code = self._popen.wait()
            self._release_leash()
        return code

    def _release_leash(self) -> None:
        with self._lock:
            fd, self._leash_fd = self._leash_fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        # A child dropped unreaped is killed by its guard, not left running.
        self._release_leash()


def spawn(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Redirect = subprocess.DEVNULL,
    stdout: Redirect = subprocess.DEVNULL,
    stderr: Redirect = None,
    cwd: str | None = None,
    user: UserIds | None = None,
    death_signal: int = signal.SIGKILL,
) -> ChildProcess:
    """Start ``command`` under the guard; redirections and ``cwd`` are :class:`subprocess.Popen`'s.

    Raises :class:`OSError` (``FileNotFoundError`` for a program not found on ``PATH``)
    when it cannot be started, as ``Popen`` would.
    """
    command = list(command)
    search_path = (env if env is not None else os.environ).get("PATH")
    if shutil.which(command[0], path=search_path) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])
    options = [f"--death-signal={int(death_signal)}"]
    if user is not None:
        groups = ",".join(str(group) for group in user.groups)
        options.append(f"--user={user.uid}:{user.gid}:{groups}")
    leash_read, leash_write = os.pipe()  # not inherited by anything but the guard
    try:
        popen = subprocess.Popen(
            [sys.executable, "-I", "-S", _GUARD, str(leash_read), *options, "--", *command],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=None if env is None else dict(env),
            cwd=cwd,
            pass_fds=(leash_read,),
            process_group=0,  # a terminal's Ctrl-C reaches awops, which stops the child itself
            bufsize=0,
        )
    except BaseException:
        os.close(leash_write)
        raise
    finally:
        os.close(leash_read)
    return ChildProcess(popen, leash_write, command)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists, another user's included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

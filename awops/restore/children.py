"""Child processes (pg_restore) that never outlive awops.

Each child leads a process group of its own, so pg_restore's parallel workers are killed
with it; on Linux it also gets ``PR_SET_PDEATHSIG``, so it is killed when awops dies even by
SIGKILL. The password reaches children through the environment only, never their argv.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from awops.restore.request import RestoreError
from awops.restore.stopping import StopRequest

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STDERR_TAIL_LINES = 40
# How long to wait for the end of stderr once the group is gone: only a process that left
# the group (and so was not killed) could hold it open longer.
STDERR_DRAIN_SECONDS = 10.0


def _die_with(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn``: SIGKILL this child when ``parent_pid`` exits."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class ChildProcess:
    """One child in its own process group; stderr is read line by line into ``on_line``.

    Use as a context manager: leaving it kills the group (when still running) and reaps it.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        stop: StopRequest,
        on_line: Callable[[str], None] = lambda line: None,
        stdout: IO[bytes] | None = None,
    ) -> None:
        self.name = os.path.basename(command[0])
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._on_line = on_line
        try:
            # The parent's pid is read here: preexec_fn runs after fork, in the child.
            self.process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=dict(env),
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),
            )
        except OSError as exc:
            raise RestoreError(f"cannot start {command[0]}: {exc.strerror or exc}") from None
        self._reader = threading.Thread(
            target=self._read_stderr, name=f"awops-{self.name}-stderr", daemon=True
        )
        self._reader.start()
        self._unregister = stop.register(self.kill)

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            self.tail.append(line)
            try:
                self._on_line(line)
            except Exception:  # progress reporting must never stop the reading
                logger.exception("reading %s output failed", self.name)

    def kill(self) -> None:
        """SIGKILL the child's whole process group (workers included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Wait for the child to exit, kill what is left of its group, reap it."""
        if self.process.returncode is None:
            # Not reaped yet, so its pid (the group's id) cannot be reused meanwhile.
            os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOWAIT)
            self.kill()
        returncode = self.process.wait()
        self._reader.join(STDERR_DRAIN_SECONDS)
        return returncode

    def errors(self) -> str:
        """The last lines of stderr, errors first, for a failure message."""
        lines = list(self.tail)
        errors = [line for line in lines if "error" in line.lower()]
        return "; ".join(errors[-5:] or lines[-5:]) or "no message"

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self._unregister()
        if self.process.returncode is None:
            self.kill()
            self.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


class CapturedRun:
    """A child started now whose stdout is collected by :meth:`result`; :meth:`close` kills
    and reaps it when the result is not wanted after all."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str], stop: StopRequest, what: str
    ) -> None:
        self.what = what
        self.stop = stop
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            self._child = ChildProcess(command, env, stop, stdout=self._out)
        except BaseException:
            self._out.close()
            raise

    def result(self) -> str:
        """Its stdout once it exits 0; :class:`RestoreError` with its stderr otherwise."""
        returncode = self._child.wait()
        self.stop.check()
        if returncode != 0:
            raise RestoreError(f"{self.what} failed (exit {returncode}): {self._child.errors()}")
        self._out.seek(0)
        return self._out.read().decode(errors="replace")

    def close(self) -> None:
        self._child.__exit__(None, None, None)
        self._out.close()


def run_captured(
    command: Sequence[str], env: Mapping[str, str], stop: StopRequest, what: str
) -> str:
    """Run ``command`` to its end and return its stdout; :class:`RestoreError` with its stderr
    when it fails, :class:`RestoreInterrupted` when a stop was requested meanwhile."""
    run = CapturedRun(command, env, stop, what)
    try:
        return run.result()
    finally:
        run.close()

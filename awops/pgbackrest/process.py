"""Child processes that never outlive awops: pgbackrest and the temporary PostgreSQL server.

Each child leads a process group of its own, so stopping it also stops what it started
(pgbackrest's local workers, a postmaster's backends and its ``restore_command``). On Linux it
also asks the kernel for a signal when its parent thread dies (``PR_SET_PDEATHSIG``): a
SIGKILLed awops takes its children with it. While awops waits, it polls the job's stop
request and kills the group as soon as one arrives.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import pwd
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from awops.errors import JobInterrupted
from awops.pgbackrest.errors import ChildTimeout, PgBackRestError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
STDERR_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1
# Variables a child must not inherit: libpq's (the application's database, its password),
# ActingWeb's PG_DB_*, awops' own and AWS credentials. pgbackrest's own PGBACKREST_* stay:
# operators may configure it through them.
_DROPPED_PREFIXES = ("PG", "AWOPS_", "AWS_")
_KEPT_PREFIXES = ("PGBACKREST_",)


@dataclass(frozen=True)
class RunAs:
    """The account children run under when awops runs as root (PostgreSQL refuses root)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise PgBackRestError(f"user {name!r} does not exist (server_user)") from None
        if entry.pw_uid == 0:
            raise PgBackRestError(
                f"server_user {name!r} is root; PostgreSQL refuses to run as root"
            )
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return cls(name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def chown(self, path: str | os.PathLike[str]) -> None:
        os.chown(path, self.uid, self.gid)


def run_as_for(server_user: str) -> RunAs | None:
    """``server_user`` when awops is root, else None: children run as awops' own user."""
    if os.geteuid() != 0:
        return None
    return RunAs.lookup(server_user)


def child_environment(run_as: RunAs | None = None) -> dict[str, str]:
    """awops' environment without secrets the children do not need."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith(_KEPT_PREFIXES) or not key.startswith(_DROPPED_PREFIXES)
    }
    if run_as is not None:
        env.update(HOME=run_as.home, USER=run_as.name, LOGNAME=run_as.name)
    return env


def _death_signal_preexec(signal_number: int) -> Callable[[], None] | None:
    """A preexec function that makes the child receive ``signal_number`` when awops dies.

    Looked up before the fork, so the child only calls into libc. It runs after the switch
    to ``run_as`` (a credential change clears the setting) and exits at once if awops already
    died in between. The kernel sends the signal when the thread that started the child
    ends, so a child must be waited for by the thread that started it, as every one here is.
    """
    if os.uname().sysname != "Linux":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal_number, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class Child:
    """One started child process, leader of its own process group."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        run_as: RunAs | None,
        stdout: IO[bytes] | int,
        stderr: IO[bytes] | int,
        death_signal: int = signal.SIGKILL,
        cwd: str | None = None,
    ) -> None:
        self.command = list(command)
        self.what = os.path.basename(self.command[0])
        kwargs: dict[str, Any] = {}
        if run_as is not None:
            kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=list(run_as.groups))
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_death_signal_preexec(death_signal),
                **kwargs,
            )
        except OSError as exc:
            raise PgBackRestError(
                f"cannot start {self.command[0]}: {exc.strerror or exc}"
            ) from None
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signal_number: int) -> None:
        """Send ``signal_number`` to the child's whole process group, if any of it is left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal_number)

    def kill(self) -> None:
        """SIGKILL the group and reap the child."""
        self.signal_group(signal.SIGKILL)
        self.process.wait()

    def wait(
        self,
        stop_requested: Callable[[], bool],
        timeout_seconds: float,
        what: str,
        timeout_option: str,
    ) -> int:
        """The exit code; kills the group on a stop request or after ``timeout_seconds``."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                code = self.process.wait(POLL_SECONDS)
                # The leader is gone; what it left in its group goes with it.
                self.signal_group(signal.SIGKILL)
                return code
            except subprocess.TimeoutExpired:
                pass
            if stop_requested():
                logger.warning("stopping %s (pid %d): the job is stopping", what, self.pid)
                self.kill()
                raise JobInterrupted(f"{what} stopped: shutdown requested or job timed out")
            if time.monotonic() > deadline:
                logger.error(
                    "%s (pid %d) ran past %g s; killing it", what, self.pid, timeout_seconds
                )
                self.kill()
                raise ChildTimeout(
                    f"{what} did not finish within {timeout_seconds:g} s ({timeout_option})"
                )


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """pgbackrest's error text: stderr, else stdout, without blank lines."""
        text = self.stderr.strip() or self.stdout.strip()[-STDERR_TAIL_BYTES:]
        return " ".join(line.strip() for line in text.splitlines() if line.strip()) or "no message"


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    run_as: RunAs | None,
    stop_requested: Callable[[], bool],
    timeout_seconds: float,
    what: str,
    timeout_option: str,
) -> Completed:
    """Run a command to its end with stdout and stderr captured in temporary files."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = Child(command, env=env, run_as=run_as, stdout=out, stderr=err)
        try:
            code = child.wait(stop_requested, timeout_seconds, what, timeout_option)
        finally:
            if child.poll() is None:
                child.kill()
        out.seek(0)
        stdout = out.read().decode(errors="replace")
        err.seek(0, os.SEEK_END)
        size = err.tell()
        err.seek(max(0, size - STDERR_TAIL_BYTES))
        stderr = err.read().decode(errors="replace")
    return Completed(code, stdout, stderr)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StopWatcher:
    """Calls ``on_stop`` once, from a thread of its own, as soon as a stop is requested: for
    blocking work (a query, a wait) that cannot poll the request itself."""

    def __init__(self, stop_requested: Callable[[], bool], on_stop: Callable[[], None]) -> None:
        self._stop_requested = stop_requested
        self._on_stop = on_stop
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="awops-pgbackrest-stop-watch")

    def _watch(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            if self._stop_requested():
                self.fired = True
                try:
                    self._on_stop()
                except Exception:
                    logger.warning("stopping after a stop request failed", exc_info=True)
                return

    def __enter__(self) -> StopWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

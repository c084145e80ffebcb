"""pgbackrest and the temporary PostgreSQL server as children of awops.

They start through :func:`awops.children.spawn`, so each runs in a process group of its own
under a guard that kills it when awops dies; as the server's user when awops is root
(:class:`RunAs`, PostgreSQL refuses root), and with none of awops' secrets in their
environment. :func:`run` runs a pgbackrest command to its end, killing it on the job's stop
request or past its timeout.
"""

from __future__ import annotations

import logging
import os
import pwd
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from awops.children import ChildProcess, spawn
from awops.errors import JobInterrupted
from awops.pgbackrest.errors import ChildTimeout, PgBackRestError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
STDERR_TAIL_BYTES = 4000
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
        try:
            child = spawn(command, env=env, stdout=out, stderr=err, user=run_as)
        except OSError as exc:
            raise PgBackRestError(f"cannot start {command[0]}: {exc.strerror or exc}") from None
        with child:
            code = _wait(child, stop_requested, timeout_seconds, what, timeout_option)
        out.seek(0)
        stdout = out.read().decode(errors="replace")
        err.seek(0, os.SEEK_END)
        size = err.tell()
        err.seek(max(0, size - STDERR_TAIL_BYTES))
        stderr = err.read().decode(errors="replace")
    return Completed(code, stdout, stderr)


def _wait(
    child: ChildProcess,
    stop_requested: Callable[[], bool],
    timeout_seconds: float,
    what: str,
    timeout_option: str,
) -> int:
    """The exit code; kills the group on a stop request or after ``timeout_seconds``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        code = child.wait(POLL_SECONDS)
        if code is not None:
            return code
        if stop_requested():
            logger.warning("stopping %s (pid %d): the job is stopping", what, child.pid)
            child.kill()
            raise JobInterrupted(f"{what} stopped: shutdown requested or job timed out")
        if time.monotonic() > deadline:
            logger.error("%s (pid %d) ran past %g s; killing it", what, child.pid, timeout_seconds)
            child.kill()
            raise ChildTimeout(
                f"{what} did not finish within {timeout_seconds:g} s ({timeout_option})"
            )

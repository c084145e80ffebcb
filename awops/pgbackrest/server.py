"""The scratch directory a restore test works in, and the temporary server started from it.

A scratch directory is ``<work_dir>/awops-pgbr-verify-<UTC stamp>-<pid>-<run id>``, mode 0700,
owned by the server's user. Every run first removes those of runs that died (their process is
gone, or is this one, or they are a day old), stopping a postmaster still running in one. The
temporary server listens on a free loopback port but accepts connections only on its own
socket in the scratch directory (``trust``, reachable by its user and root alone); archiving,
replication and hot standby are off, so it can never push WAL into the repository or follow
the production primary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from awops.children import ChildProcess, process_alive, spawn
from awops.errors import JobInterrupted
from awops.pgbackrest.errors import PgBackRestError
from awops.pgbackrest.process import RunAs

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = "awops-pgbr-verify-"
SOCKET_PREFIX = "awops-pgbr-socket-"
SOCKET_POINTER = "socket-dir"  # in a scratch directory whose socket lives elsewhere
STALE_SCRATCH_SECONDS = 86400.0
_SCRATCH_NAME = re.compile(rf"^{SCRATCH_PREFIX}(\d{{8}}T\d{{6}}Z)-(\d+)-[0-9a-f]+$")
_STAMP = "%Y%m%dT%H%M%SZ"
_SOCKET_PATH_MAX = 107  # sun_path, with its NUL
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
STOP_WAIT_SECONDS = 30.0
_PORT_ATTEMPTS = 3


class ServerFailed(PgBackRestError):
    """The restored server did not start, did not reach consistency, or stopped."""


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_scratch(work_dir: Path, run_id: str, now: float, owner: RunAs | None) -> Path:
    """A new scratch directory for this run."""
    if not work_dir.is_dir():
        raise PgBackRestError(f"work_dir {work_dir} is not a directory")
    stamp = datetime.fromtimestamp(now, UTC).strftime(_STAMP)
    path = work_dir / f"{SCRATCH_PREFIX}{stamp}-{os.getpid()}-{run_id}"
    path.mkdir(mode=0o700)
    if owner is not None:
        owner.chown(path)
    return path


def remove_stale_scratch(work_dir: Path, now: float) -> list[str]:
    """Remove the scratch directories of restore tests that died; their names."""
    removed: list[str] = []
    for path in stale_scratch(work_dir, now):
        logger.warning("removing %s, left by a restore test that died", path)
        stop_leftover_server(path / "data")
        if remove_scratch(path):
            removed.append(path.name)
    return removed


def stale_scratch(work_dir: Path, now: float) -> list[Path]:
    """The scratch directories of restore tests that died (their process is gone, or is this
    one, or they are a day old)."""
    stale: list[Path] = []
    if not work_dir.is_dir():
        return stale
    for path in sorted(work_dir.iterdir()):
        match = _SCRATCH_NAME.match(path.name)
        if match is None or not path.is_dir() or path.is_symlink():
            continue
        created = datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC).timestamp()
        owner = int(match[2])
        alive_elsewhere = owner != os.getpid() and process_alive(owner)
        if alive_elsewhere and now - created < STALE_SCRATCH_SECONDS:
            logger.info("leaving %s: its restore test (pid %d) is still running", path, owner)
            continue
        stale.append(path)
    return stale


def remove_scratch(path: Path) -> bool:
    """Remove a scratch directory and its socket directory; False if something is left."""
    pointer = path / SOCKET_POINTER
    with contextlib.suppress(OSError):
        socket_dir = Path(pointer.read_text().strip())
        # Only a directory awops made: a short one under the temp directory, by its prefix.
        if socket_dir.parent == Path(tempfile.gettempdir()) and socket_dir.name.startswith(
            SOCKET_PREFIX
        ):
            shutil.rmtree(socket_dir, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        logger.error("could not remove %s; remove it by hand", path)
        return False
    logger.info("removed %s", path)
    return True


def stop_leftover_server(data_dir: Path) -> None:
    """SIGKILL a postmaster still running on ``data_dir`` (it outlived a crashed run)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(data_dir).encode() not in command_line:
        return  # the pid now belongs to another process
    logger.warning("killing postmaster %d left running on %s", pid, data_dir)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def server_major_version(bindir: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    if match is None:
        return None
    major = int(match[1])
    return str(major) if major >= 10 else f"{major}.{match[2]}"


def find_bindir(option: str, version: str) -> Path:
    """Server binaries of PostgreSQL ``version`` (the backup's): ``option``, else Debian's
    ``/usr/lib/postgresql/<version>/bin``, else the directory of ``postgres`` on PATH."""
    if option:
        found = server_major_version(Path(option))
        if found != version:
            raise PgBackRestError(
                f"server_bindir {option} holds PostgreSQL {found or 'no server'}, the backup is "
                f"PostgreSQL {version}"
            )
        return Path(option)
    candidates = [Path(f"/usr/lib/postgresql/{version}/bin")]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if server_major_version(candidate) == version:
            return candidate
    raise PgBackRestError(
        f"no PostgreSQL {version} server binaries (the backup's version): install "
        f"postgresql-{version} or set server_bindir"
    )


class TemporaryServer:
    """A postmaster on a restored data directory, a child of awops until :meth:`stop`."""

    def __init__(
        self,
        bindir: Path,
        scratch: Path,
        run_as: RunAs | None,
        env: Mapping[str, str],
        settings: Mapping[str, str],
    ) -> None:
        self.bindir = bindir
        self.scratch = scratch
        self.data_dir = scratch / "data"
        self.socket_dir = scratch / "socket"
        self.log_path = scratch / "server.log"
        self.run_as = run_as
        self.env = dict(env)
        self.extra_settings = dict(settings)
        self.port = 0
        self.child: ChildProcess | None = None

    def _own(self, path: Path) -> None:
        if self.run_as is not None:
            self.run_as.chown(path)

    def _prepare(self) -> None:
        if self.child is None and not self.socket_dir.exists():
            if len(str(self.socket_dir / ".s.PGSQL.65535")) >= _SOCKET_PATH_MAX:
                # A deep work_dir: the socket goes to a short directory of its own, named in
                # the scratch directory so a crashed run's is found and removed too.
                self.socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX))
                (self.scratch / SOCKET_POINTER).write_text(str(self.socket_dir))
            else:
                self.socket_dir.mkdir(mode=0o700)
            self._own(self.socket_dir)
        # Only the socket, whose directory only the server's user (and root) can enter.
        hba = self.scratch / "pg_hba.conf"
        hba.write_text("local all all trust\n")
        ident = self.scratch / "pg_ident.conf"
        ident.write_text("")
        conf = self.data_dir / "postgresql.conf"
        if not conf.exists():  # Debian keeps it in /etc/postgresql, outside the backup
            conf.write_text("")
        for path in (hba, ident, conf):
            self._own(path)

    def settings(self) -> dict[str, str]:
        base = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "hba_file": str(self.scratch / "pg_hba.conf"),
            "ident_file": str(self.scratch / "pg_ident.conf"),
            "archive_mode": "off",
            "hot_standby": "off",
            "primary_conninfo": "",
            "primary_slot_name": "",
            "synchronous_standby_names": "",
            "logging_collector": "off",
            "log_destination": "stderr",
            "ssl": "off",
            "huge_pages": "off",
            "shared_buffers": "128MB",
            "max_connections": "20",
            "autovacuum": "off",
            "jit": "off",  # JIT needs writable and executable memory, denied by hardened units
            "cluster_name": "awops-verify",
        }
        return {**base, **self.extra_settings}

    def start(self) -> None:
        self._prepare()
        socket_path = self.socket_dir / ".s.PGSQL.65535"
        if len(str(socket_path)) >= _SOCKET_PATH_MAX:
            raise ServerFailed(
                f"the server's socket {socket_path} would pass the {_SOCKET_PATH_MAX - 1}-byte "
                f"limit of a Unix socket path (set TMPDIR shorter)"
            )
        self.port = free_loopback_port()
        command = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for name, value in self.settings().items():
            command += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            # Should awops die, SIGQUIT, an immediate shutdown: the postmaster stops its
            # children (each in a process group of its own) and exits.
            try:
                self.child = spawn(
                    command,
                    env=self.env,
                    stdout=log,
                    stderr=log,
                    cwd=str(self.scratch),
                    user=self.run_as,
                    death_signal=signal.SIGQUIT,
                )
            except OSError as exc:
                raise PgBackRestError(f"cannot start {command[0]}: {exc.strerror or exc}") from None
        logger.info(
            "started the restored server (guard pid %d) on 127.0.0.1:%d",
            self.child.pid,
            self.port,
        )

    def start_and_wait_ready(
        self, timeout_seconds: float, stop_requested: Callable[[], bool]
    ) -> None:
        """Start, and wait until it has replayed to consistency, promoted and accepts
        connections; a port another process took in between is retried with a new one."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.start()
            try:
                self._wait_ready(timeout_seconds, stop_requested)
                return
            except ServerFailed:
                if attempt == _PORT_ATTEMPTS or "could not bind" not in self.log_tail(20):
                    raise
                logger.warning("port %d was taken; starting again on another", self.port)
                self.stop()

    def _wait_ready(self, timeout_seconds: float, stop_requested: Callable[[], bool]) -> None:
        assert self.child is not None
        deadline = time.monotonic() + timeout_seconds
        while True:
            code = self.child.wait(0)
            if code is not None:
                raise ServerFailed(f"the restored server exited ({code}): {self.log_tail()}")
            if self._accepts_connections():
                return
            if stop_requested():
                raise JobInterrupted("restore test stopped: shutdown requested or job timed out")
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"the restored server did not reach consistency within {timeout_seconds:g} s "
                    f"(ready_timeout_seconds): {self.log_tail()}"
                )
            time.sleep(0.5)

    def _accepts_connections(self) -> bool:
        """pg_isready: 0 once recovery is over (hot standby is off, so not before)."""
        result = subprocess.run(
            [
                str(self.bindir / "pg_isready"),
                "--quiet",
                f"--host={self.socket_dir}",
                f"--port={self.port}",
                "--timeout=5",
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        return result.returncode == 0

    def connect_kwargs(self, dbname: str, user: str) -> dict[str, Any]:
        return {
            "host": str(self.socket_dir),
            "port": self.port,
            "dbname": dbname,
            "user": user,
            "connect_timeout": 10,
            "application_name": "awops-pgbackrest-restore-verify",
        }

    def signal_stop(self) -> None:
        """Ask for an immediate shutdown without waiting (from another thread)."""
        if self.child is not None:
            self.child.send_signal(signal.SIGQUIT)

    def stop(self) -> None:
        """Immediate shutdown (nothing in the copy is worth a checkpoint); SIGKILL for what
        is left after ``STOP_WAIT_SECONDS``; reaped either way."""
        child, self.child = self.child, None
        if child is None:
            return
        child.send_signal(signal.SIGQUIT)
        if child.wait(STOP_WAIT_SECONDS) is None:
            logger.error("the restored server did not stop within %g s", STOP_WAIT_SECONDS)
            child.kill()
        child.close()
        logger.info("stopped the restored server (guard pid %d)", child.pid)

    def remove(self) -> None:
        """Stop, and remove the scratch directory and a socket directory outside it."""
        self.stop()
        remove_scratch(self.scratch)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "no server log"
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "the server log is empty"

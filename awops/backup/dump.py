"""Running PostgreSQL's client programs: pg_dump streamed into sinks, pg_restore from a file.

pg_dump's output goes through one read buffer: encrypted (optional), hashed with sha256 and
handed to every sink, so memory stays bounded whatever the database size. The password
reaches the programs through the environment (``PGPASSWORD``), never their argv. Both run
under :func:`awops.children.spawn`: killed with their process group on a stop, and with awops
should it die.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from awops.backup.encryption import AgeEncryptor
from awops.backup.targets import Writer
from awops.children import ChildProcess, spawn
from awops.errors import JobError

logger = logging.getLogger(__name__)

PIPE_READ_BYTES = 1024 * 1024
_STDERR_TAIL_BYTES = 4000
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class DumpError(JobError):
    """pg_dump or pg_restore failed, or cannot be used against this server."""


def client_environment(libpq: Mapping[str, str]) -> dict[str, str]:
    """The process environment without the caller's own PG* variables, plus ``libpq``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(libpq)
    return env


def resolve_program(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise DumpError(f"{program} not found (set the pg_dump/pg_restore option to its path)")
    return found


def client_version(program: str) -> tuple[int, str]:
    """``(major, full text)`` from ``<program> --version``."""
    try:
        out = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise DumpError(f"{program} --version failed: {exc}") from None
    match = _VERSION.search(out)
    if match is None:
        raise DumpError(f"{program} --version printed no PostgreSQL version: {out[:100]!r}")
    return int(match[1]), out


def check_client_version(program: str, client_major: int, server_version_num: int) -> None:
    server_major = server_version_num // 10000
    if client_major < server_major:
        raise DumpError(
            f"{program} is version {client_major} but the server is {server_major}; "
            f"a dump needs a client at least as new as the server (install "
            f"postgresql-client-{server_major} or set the option to its path)"
        )


@dataclass
class Sink:
    """One target's writer; a sink that fails is aborted and dropped, the others go on."""

    label: str
    writer: Writer
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def fail(self, message: str) -> None:
        if not self.failed:
            self.error = message
            logger.error("backup to %s failed: %s", self.label, message)
            self.writer.abort()


@dataclass
class StreamResult:
    size_bytes: int = 0
    sha256: str = ""
    returncode: int | None = None
    stderr: str = ""
    stopped: bool = False
    sinks: list[Sink] = field(default_factory=list)


class PgDump:
    """One pg_dump process whose stdout is pumped into sinks by :meth:`stream`."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.command = list(command)
        self.env = dict(env)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stream()
        try:
            self.process: ChildProcess = spawn(
                self.command, env=self.env, stdout=subprocess.PIPE, stderr=self._stderr
            )
        except OSError as exc:
            self._stderr.close()
            raise DumpError(f"cannot start {self.command[0]}: {exc.strerror or exc}") from None

    def kill(self) -> None:
        """Stop pg_dump now (a cancel callback: the job timed out or the daemon stops)."""
        self.process.kill()

    def stream(
        self,
        sinks: list[Sink],
        encryptor: AgeEncryptor | None,
        stop_requested: Callable[[], bool],
    ) -> StreamResult:
        """Pump pg_dump's output into ``sinks`` until it exits; kills it on a stop request."""
        result = StreamResult(sinks=sinks)
        digest = hashlib.sha256()
        done = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(done, stop_requested), name="awops-pg-dump-watch"
        )
        watcher.start()
        stdout = self.process.stdout
        assert stdout is not None
        try:
            if encryptor is not None:
                self._emit(encryptor.header(), sinks, digest, result)
            fd = stdout.fileno()
            _widen_pipe(fd)
            while chunk := os.read(fd, PIPE_READ_BYTES):
                if encryptor is not None:
                    chunk = encryptor.update(chunk)
                self._emit(chunk, sinks, digest, result)
                if all(sink.failed for sink in sinks):
                    self.kill()
                    break
            result.returncode = self.process.wait()
            if encryptor is not None and result.returncode == 0:
                self._emit(encryptor.finish(), sinks, digest, result)
        finally:
            done.set()
            watcher.join()
            stdout.close()
            if self.process.returncode is None:
                self.kill()
            self.process.close()
            result.returncode = self.process.returncode
            result.stopped = self.process.stopped
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
            result.stderr = self._stderr.read().decode(errors="replace").strip()
            self._stderr.close()
        result.sha256 = digest.hexdigest()
        return result

    @staticmethod
    def _emit(data: bytes, sinks: list[Sink], digest: object, result: StreamResult) -> None:
        if not data:
            return
        digest.update(data)  # type: ignore[attr-defined]
        result.size_bytes += len(data)
        for sink in sinks:
            if sink.failed:
                continue
            try:
                sink.writer.write(data)
            except JobError as exc:
                sink.fail(str(exc))

    def _watch(self, done: threading.Event, stop_requested: Callable[[], bool]) -> None:
        while not done.wait(0.2):
            if stop_requested():
                logger.warning("stop requested: killing pg_dump")
                self.kill()
                return


def _widen_pipe(fd: int) -> None:
    """A 1 MiB pipe: pg_dump blocks less and the reader wakes up less often."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_READ_BYTES)


def run_client(
    command: Sequence[str],
    env: Mapping[str, str],
    on_cancel: Callable[[Callable[[], None]], None],
    what: str,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> str:
    """Run pg_restore and the like to the end; its stdout, or DumpError with its stderr.

    Once ``should_stop()`` is true the program is terminated (SIGTERM, then SIGKILL), and a
    cancel registered with ``on_cancel`` kills it at once.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = spawn(command, env=env, stdout=out, stderr=err)
        except OSError as exc:
            raise DumpError(f"cannot start {command[0]}: {exc.strerror or exc}") from None
        with child:
            on_cancel(child.kill)
            returncode = child.run(should_stop)
        err.seek(0)
        errors = err.read()[-_STDERR_TAIL_BYTES:].decode(errors="replace").strip()
        if child.stopped:
            raise DumpError(f"{what} stopped before it finished (exit {returncode})")
        if returncode != 0:
            raise DumpError(f"{what} failed (exit {returncode}): {errors or 'no message'}")
        out.seek(0)
        return out.read().decode(errors="replace")

"""Throwaway PostgreSQL clusters built with the server binaries ``pg_config --bindir`` names.

A session-wide cluster serves most tests, each in a fresh database; tests that stop, kill or
starve the server ask ``pg_cluster_factory`` for a private one, so nothing shared is touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fix_schema import create_actingweb_schema

SUPERUSER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


class PgCluster:
    """One postmaster in a temp directory, on its own port and socket, with password auth."""

    def __init__(self, max_connections: int = 60, extra_settings: dict[str, str] | None = None):
        self.bindir = pg_bindir()
        self.port = free_port()
        self.password = "aw-test-" + secrets.token_hex(8)
        self.base = Path(tempfile.mkdtemp(prefix="awops-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.logfile = self.base / "server.log"
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": str(max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            **(extra_settings or {}),
        }
        self._run_as = None
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            self._run_as = "postgres"
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.socket_dir.mkdir()
        self._chown(self.socket_dir)

    def _chown(self, path: Path) -> None:
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _cmd(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", self._run_as, "--", *command] if self._run_as else command

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(self._cmd(*args), check=True, capture_output=True, timeout=timeout)

    def init(self) -> PgCluster:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        return self

    def options(self) -> str:
        settings = {"port": str(self.port), "unix_socket_directories": str(self.socket_dir)}
        settings.update(self.settings)
        return " ".join(f"-c {key}={value}" for key, value in settings.items())

    def start(self) -> PgCluster:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "-o",
            self.options(),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would."""
        pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def destroy(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def connect_kwargs(self, dbname: str = "postgres") -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": SUPERUSER,
            "password": self.password,
            "dbname": dbname,
        }

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(**self.connect_kwargs(dbname), **kwargs)

    def create_database(self, name: str | None = None) -> PgDatabase:
        name = name or "t_" + secrets.token_hex(6)
        with self.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return PgDatabase(self, name)


@dataclass
class PgDatabase:
    cluster: PgCluster
    name: str

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return self.cluster.connect(self.name, **kwargs)

    def awops_env(self, **extra: str) -> dict[str, str]:
        """The environment an ActingWeb application beside this database would have."""
        return {
            "DATABASE_BACKEND": "postgresql",
            "PG_DB_HOST": "127.0.0.1",
            "PG_DB_PORT": str(self.cluster.port),
            "PG_DB_NAME": self.name,
            "PG_DB_USER": SUPERUSER,
            "PG_DB_PASSWORD": self.cluster.password,
            "PG_POOL_TIMEOUT": "3",
            "PG_POOL_MIN_SIZE": "1",
            **extra,
        }


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster().init().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_cluster_factory() -> Iterator[Any]:
    """Private clusters for tests that stop, kill or exhaust the server."""
    made: list[PgCluster] = []

    def make(**kwargs: Any) -> PgCluster:
        cluster = PgCluster(**kwargs).init().start()
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.destroy()


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> PgDatabase:
    """A fresh, empty database on the shared cluster."""
    return pg_cluster.create_database()


@pytest.fixture
def aw_db(pg_db: PgDatabase) -> PgDatabase:
    """A fresh database holding ActingWeb's schema, as its migrations create it."""
    with pg_db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
    return pg_db


def start_standby(primary: PgCluster) -> PgCluster:
    """A hot standby of ``primary``: ``pg_basebackup -R`` into a new cluster, streaming from it.

    It shares the primary's settings (a hot standby needs ``max_connections`` at least the
    primary's) and, being a copy, its superuser password.
    """
    standby = PgCluster()
    standby.settings = dict(primary.settings)
    standby.password = primary.password
    command = standby._cmd(
        "pg_basebackup",
        "-D",
        str(standby.data),
        "-h",
        "127.0.0.1",
        "-p",
        str(primary.port),
        "-U",
        SUPERUSER,
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-sync",
    )
    env = {**os.environ, "PGPASSWORD": primary.password}
    subprocess.run(command, check=True, capture_output=True, timeout=120, env=env)
    return standby.start()


def pause_replay(standby: PgCluster, timeout: float = 30) -> None:
    """Stop WAL replay on ``standby`` (it keeps receiving), so its lag grows with each commit."""
    with standby.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + timeout
        while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone() != ("paused",):
            if time.monotonic() > deadline:
                raise RuntimeError("WAL replay did not pause")
            time.sleep(0.05)


@pytest.fixture
def pg_standby_factory() -> Iterator[Any]:
    """Hot standbys of clusters a test made; removed after the test."""
    made: list[PgCluster] = []

    def make(primary: PgCluster) -> PgCluster:
        standby = start_standby(primary)
        made.append(standby)
        return standby

    yield make
    for standby in made:
        standby.destroy()

"""Throwaway clusters that archive through Debian's real ``pgbackrest`` into a local repository.

Each stanza is a :class:`PgCluster` with ``archive_mode = on`` and ``archive_command =
pgbackrest ... archive-push %p``, its own ``pgbackrest.conf`` (repository, log, lock and spool
directories beside the cluster), ``stanza-create`` run, ActingWeb's schema with a few rows and
an Alembic revision in database ``actingweb``, and one full backup. The session-wide stanza is
read only; tests that break or age one ask ``pgbackrest_stanza_factory`` for their own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.fix_pg import SUPERUSER, PgCluster
from tests.fix_schema import create_actingweb_schema

PGBACKREST = shutil.which("pgbackrest")
DATABASE = "actingweb"
ALEMBIC_REVISION = "4f2e9a1c7b3d"
# Rows per ActingWeb table in the backed-up database.
SEED_ROWS = {"actors": 3, "properties": 4, "trusts": 2, "attributes": 5}

needs_pgbackrest = pytest.mark.skipif(PGBACKREST is None, reason="pgbackrest missing")


class PgBackRestStanza:
    """A cluster, its pgBackRest configuration and repository, and one full backup."""

    def __init__(self, name: str = "awops") -> None:
        self.name = name
        self.cluster = PgCluster(max_connections=30)
        self.home = self.cluster.base / "pgbackrest"
        self.repo = self.home / "repo"
        self.config = self.home / "pgbackrest.conf"
        self.run_as = self.cluster._run_as

    @property
    def data(self) -> Path:
        return self.cluster.data

    def _chown_tree(self, path: Path) -> None:
        if self.run_as is None:
            return
        entry = pwd.getpwnam(self.run_as)
        for root, dirs, files in os.walk(path):
            for item in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(item, entry.pw_uid, entry.pw_gid)

    def write_config(self, path: Path | None = None, **extra: str) -> Path:
        """A pgbackrest.conf for this stanza; ``extra`` adds or replaces [global] options."""
        options = {
            "repo1-path": str(self.repo),
            "repo1-retention-full": "2",
            "log-path": str(self.home / "log"),
            "lock-path": str(self.home / "lock"),
            "spool-path": str(self.home / "spool"),
            "start-fast": "y",
            "compress-type": "gz",
            "compress-level": "1",
            **{key.replace("_", "-"): value for key, value in extra.items()},
        }
        text = "[global]\n" + "".join(f"{key}={value}\n" for key, value in options.items())
        text += (
            f"\n[{self.name}]\npg1-path={self.data}\npg1-port={self.cluster.port}\n"
            f"pg1-socket-path={self.cluster.socket_dir}\npg1-user={SUPERUSER}\n"
        )
        target = path or self.config
        target.write_text(text)
        self._chown_tree(target.parent)
        return target

    def pgbackrest(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run pgbackrest as the cluster's owner, as an operator would."""
        assert PGBACKREST is not None
        command = [PGBACKREST, f"--config={self.config}", f"--stanza={self.name}", *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"pgbackrest {' '.join(args)}: {result.stderr}"
        return result

    def archive_command(self, *options: str) -> str:
        extra = "".join(f" {option}" for option in options)
        return f"{PGBACKREST} --config={self.config} --stanza={self.name}{extra} archive-push %p"

    def create(self, backup: bool = True) -> PgBackRestStanza:
        for sub in ("repo", "log", "lock", "spool"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.cluster.init()
        # pgBackRest connects over the socket as the superuser, without a password.
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all {SUPERUSER} trust\n" + hba.read_text())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "archive_mode = on\nwal_level = replica\n"
                f"archive_command = '{self.archive_command()}'\n"
            )
        self.cluster.start()
        self.pgbackrest("stanza-create")
        self.seed()
        if backup:
            self.backup("full")
        return self

    def seed(self) -> None:
        self.cluster.create_database(DATABASE)
        with self.cluster.connect(DATABASE, autocommit=True) as conn:
            create_actingweb_schema(conn)
            conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            conn.execute("INSERT INTO alembic_version VALUES (%s)", (ALEMBIC_REVISION,))
            conn.execute(
                "INSERT INTO actors SELECT 'actor' || n, 'creator', 'secret', now() "
                "FROM generate_series(1, %s) n",
                (SEED_ROWS["actors"],),
            )
            conn.execute(
                "INSERT INTO properties SELECT 'actor1', 'p' || n, 'v' "
                "FROM generate_series(1, %s) n",
                (SEED_ROWS["properties"],),
            )
            conn.execute(
                "INSERT INTO trusts (id, peerid, baseuri, type, relationship, secret, approved,"
                " peer_approved, verified) SELECT 'actor1', 'peer' || n, 'https://peer', 't',"
                " 'friend', 's' || n, true, true, true FROM generate_series(1, %s) n",
                (SEED_ROWS["trusts"],),
            )
            conn.execute(
                "INSERT INTO attributes (id, bucket_name, bucket, name, data, ttl_timestamp) "
                "SELECT 'actor1', 'b:' || n, 'b', 'n', '{}', NULL FROM generate_series(1, %s) n",
                (SEED_ROWS["attributes"],),
            )

    def backup(self, backup_type: str = "full") -> None:
        self.pgbackrest(f"--type={backup_type}", "backup")

    def switch_wal(self, times: int = 1) -> None:
        """Finish the current WAL segment ``times`` times, each with something in it."""
        with self.cluster.connect(autocommit=True) as conn:
            for _ in range(times):
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS churn (x int)")
                conn.execute("INSERT INTO churn VALUES (1)")
                conn.execute("SELECT pg_switch_wal()")

    def wait_archived(self) -> None:
        """Until the archiver has pushed everything finished so far."""
        self.pgbackrest("--archive-timeout=60", "check")

    def set_archive_command(self, command: str) -> None:
        with self.cluster.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command))
            )
            conn.execute("SELECT pg_reload_conf()")

    def awops_env(self, **extra: str) -> dict[str, str]:
        """ActingWeb's environment for the backed-up database, plus the pgbackrest job's."""
        return {
            "DATABASE_BACKEND": "postgresql",
            "PG_DB_HOST": "127.0.0.1",
            "PG_DB_PORT": str(self.cluster.port),
            "PG_DB_NAME": DATABASE,
            "PG_DB_USER": SUPERUSER,
            "PG_DB_PASSWORD": self.cluster.password,
            "PG_POOL_MIN_SIZE": "0",
            "AWOPS_JOB_PGBACKREST_STANZA": self.name,
            "AWOPS_JOB_PGBACKREST_CONFIG": str(self.config),
            **extra,
        }

    def work_dir(self, name: str = "work") -> Path:
        """A directory the server's user can reach, for restore tests' scratch directories."""
        path = self.cluster.base / name
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
        return path

    def destroy(self) -> None:
        self.cluster.destroy()


@pytest.fixture(scope="session")
def pgbackrest_stanza() -> Iterator[PgBackRestStanza]:
    """A healthy stanza with one fresh full backup; tests must not change it."""
    if PGBACKREST is None:
        pytest.skip("pgbackrest missing")
    stanza = PgBackRestStanza().create()
    try:
        yield stanza
    finally:
        stanza.destroy()


@pytest.fixture
def pgbackrest_stanza_factory() -> Iterator[Any]:
    """Private stanzas for tests that break archiving or the repository."""
    if PGBACKREST is None:
        pytest.skip("pgbackrest missing")
    made: list[PgBackRestStanza] = []

    def make(name: str = "awops", backup: bool = True) -> PgBackRestStanza:
        stanza = PgBackRestStanza(name)
        made.append(stanza)
        return stanza.create(backup)

    yield make
    for stanza in made:
        stanza.destroy()

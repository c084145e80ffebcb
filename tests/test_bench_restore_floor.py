"""bench/restore_floor.py, the yardstick bench.restore sets beside awops: it must really
restore and count, or the floor it measures would be lower than any real restore's."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench.backup import client_env, pg_dump_env
from bench.restore_floor import count_every_table, sha256_of
from tests.fix_pg import PgDatabase
from tests.test_pg_backup import fill


def test_the_floor_restores_the_dump_and_counts_every_table(
    aw_db: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    expected = fill(aw_db, actors=30, attributes=400)
    dump = tmp_path / "aw.dump"
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump)], env=pg_dump_env(aw_db), check=True)
    name = f"{aw_db.name}_floor"

    for extra in ([], ["--no-count"]):
        subprocess.run(
            [sys.executable, "-m", "bench.restore_floor", str(dump), name, "2", *extra],
            env=client_env(aw_db),
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
        )
        with aw_db.cluster.connect(name) as conn:
            restored = conn.execute("SELECT count(*) FROM attributes").fetchone()
        assert restored == (400,)
        with aw_db.cluster.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}"')

    for variable, value in client_env(aw_db).items():
        if variable.startswith("PG"):
            monkeypatch.setenv(variable, value)  # libpq's variables, as the bench sets them
    counts = count_every_table(aw_db.name)
    assert {table: counts[table] for table in expected} == expected
    assert sha256_of(str(dump)) == hashlib.sha256(dump.read_bytes()).hexdigest()

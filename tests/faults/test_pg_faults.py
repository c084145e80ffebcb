"""PostgreSQL restarted mid-purge and mid-backup, pg_dump killed, the backup disk full."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from awops.result import JobResult
from tests.faults._helpers import (
    KEEP_ROWS,
    backups_in,
    child_pids,
    counts,
    fill_attributes,
)
from tests.fix_awops import wait_for
from tests.fix_pg import PgCluster, PgDatabase
from tests.fix_schema import create_actingweb_schema

EXPIRED = 30_000
# Small batches, so a purge takes long enough to be interrupted in the middle.
SLOW_PURGE = {
    "AWOPS_JOB_PG_TTL_PURGE_INITIAL_BATCH_SIZE": "100",
    "AWOPS_JOB_PG_TTL_PURGE_MIN_BATCH_SIZE": "100",
    "AWOPS_JOB_PG_TTL_PURGE_MAX_BATCH_SIZE": "100",
}


def private_db(pg_cluster_factory: Any) -> tuple[PgCluster, PgDatabase]:
    cluster = pg_cluster_factory()
    db = cluster.create_database()
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
    return cluster, db


def in_thread(work: Any) -> tuple[threading.Thread, list[JobResult]]:
    box: list[JobResult] = []
    thread = threading.Thread(target=lambda: box.append(work()), daemon=True)
    thread.start()
    return thread, box


def test_postgres_restarted_mid_purge(pg_cluster_factory: Any, in_process: Any):
    cluster, db = private_db(pg_cluster_factory)
    fill_attributes(db, EXPIRED)
    runner = in_process(db.awops_env(**SLOW_PURGE))
    thread, box = in_thread(lambda: runner.run("pg-ttl-purge"))
    wait_for(lambda: counts(db)[0] < EXPIRED - 500, what="the purge to be under way")
    cluster.restart()
    thread.join(120)
    assert box and box[0].status in ("ok", "error")
    left, kept = counts(db)
    assert kept == KEEP_ROWS
    assert 0 < left < EXPIRED or box[0].status == "ok"
    following = runner.run("pg-ttl-purge")
    assert following.status == "ok", following.summary
    assert counts(db) == (0, KEEP_ROWS)


def blocked_backup(db: PgDatabase, runner: Any) -> tuple[Any, threading.Thread, list[JobResult]]:
    """Start a pg-backup whose pg_dump waits on a lock, so it can be hit while it runs."""
    locker = db.connect()
    locker.execute("LOCK TABLE attributes IN ACCESS EXCLUSIVE MODE")
    thread, box = in_thread(lambda: runner.run("pg-backup"))

    def dumping() -> bool:
        with db.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()
        return bool(row and row[0])

    wait_for(dumping, 20, "the backup waiting on the lock")
    return locker, thread, box


@pytest.mark.parametrize("fault", ["restart-postgres", "kill-pg_dump"])
def test_backup_interrupted_keeps_the_good_backup_and_the_next_one_succeeds(
    pg_cluster_factory: Any, in_process: Any, tmp_path: Path, fault: str
):
    cluster, db = private_db(pg_cluster_factory)
    fill_attributes(db, 2000)
    target = tmp_path / "backups"
    env = db.awops_env(
        AWOPS_BACKUP_TARGET=f"file://{target}", AWOPS_JOB_PG_BACKUP_LOCK_WAIT_TIMEOUT_SECONDS="60"
    )
    runner = in_process(env)
    assert runner.run("pg-backup").status == "ok"
    good = backups_in(target)
    assert any(name.endswith(".manifest.json") for name in good)

    locker, thread, box = blocked_backup(db, runner)
    if fault == "restart-postgres":
        cluster.restart()  # fast shutdown ends every session, pg_dump's included
    else:
        (pid,) = wait_for(lambda: child_pids(os.getpid(), "pg_dump"), 10, "pg_dump")
        os.kill(pid, signal.SIGKILL)
    thread.join(120)
    with contextlib.suppress(Exception):
        locker.close()
    assert box and box[0].status == "error", box
    after = backups_in(target)
    assert set(good) <= set(after), "the good backup is kept"
    # Nothing of the failed run remains, not even a *.partial.
    assert [n for n in after if n not in good] == [], "nothing of the failed run remains"
    following = runner.run("pg-backup")
    assert following.status == "ok", following.summary
    assert len([n for n in backups_in(target) if n.endswith(".manifest.json")]) == 2
    assert counts(db) == (2000, KEEP_ROWS)


@pytest.fixture
def small_filesystem(tmp_path: Path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MiB tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "awops-fault", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_backup_to_a_full_filesystem_fails_cleanly_and_succeeds_once_there_is_room(
    aw_db: PgDatabase, in_process: Any, small_filesystem: Path
):
    fill_attributes(aw_db, 40_000)  # about 5 MB uncompressed: more than the 2 MiB there is
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=f"file://{small_filesystem}", AWOPS_JOB_PG_BACKUP_COMPRESS_LEVEL="0"
    )
    runner = in_process(env)
    result = runner.run("pg-backup")
    assert result.status == "error"
    assert not [n for n in backups_in(small_filesystem) if n.endswith(".manifest.json")]
    assert not [n for n in backups_in(small_filesystem) if n.endswith(".dump")], (
        "a partial dump is not left looking like a backup"
    )
    subprocess.run(
        ["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True, capture_output=True
    )
    following = runner.run("pg-backup")
    assert following.status == "ok", following.summary
    assert counts(aw_db) == (40_000, KEEP_ROWS)

"""``pg-ttl-purge`` interrupted: the server restarts mid-purge, SIGTERM between batches."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from awops.result import JobResult
from tests.fix_awops import clean_environ
from tests.fix_pg import PgDatabase
from tests.fix_schema import create_actingweb_schema
from tests.test_pg_ttl_purge import JOB, count, job_env, seed_many

EXPIRED, LIVE = 60_000, 2_000
# Small batches that never grow, so a purge of EXPIRED rows takes many batches.
SLOW = {"initial_batch_size": 50, "min_batch_size": 50, "max_batch_size": 50, "walk": "index"}


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def deleted_so_far(db: PgDatabase) -> int:
    with db.connect() as conn:
        return EXPIRED + LIVE - count(conn)


def test_server_restarted_mid_purge_is_error_and_next_run_completes(pg_cluster_factory, in_process):
    cluster = pg_cluster_factory()
    db = cluster.create_database()
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
        seed_many(conn, EXPIRED, LIVE)
    runner = in_process(job_env(db, **SLOW))
    box: list[JobResult] = []
    purge = threading.Thread(target=lambda: box.append(runner.run(JOB)))
    purge.start()
    wait_until(lambda: deleted_so_far(db) > 0)
    cluster.restart()
    purge.join(120)
    (first,) = box
    assert first.status == "error", first.summary
    assert "the next run carries on" in first.summary
    with db.connect() as conn:
        assert count(conn, "id LIKE 'l%'") == LIVE
        left = count(conn, "id LIKE 'x%'")
    assert 0 < left < EXPIRED
    # every batch the job counted was committed whole; the one in flight rolled back whole
    assert EXPIRED - left >= first.details["deleted"]

    second = runner.run(JOB)  # the same process: the pool replaces the broken connection
    assert second.status == "ok", second.summary
    assert second.details["deleted"] == left
    with db.connect() as conn:
        assert count(conn) == LIVE


def test_sigterm_between_batches_stops_cleanly(aw_db: PgDatabase, tmp_path: Path):
    with aw_db.connect(autocommit=True) as conn:
        seed_many(conn, EXPIRED, LIVE)
    env = job_env(aw_db, progress_interval_seconds=0.2, **SLOW)
    log = tmp_path / "stderr.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "awops", "run-once", JOB, "--json"],
            env=clean_environ(env),
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    try:
        # A progress line logged, and far from the purge's end (60,000 rows).
        wait_until(lambda: deleted_so_far(aw_db) > 5000 and "rows/s" in log.read_text())
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = log.read_text()
    assert process.returncode == 1, stderr
    (job,) = json.loads(stdout)["jobs"]
    assert job["status"] == "error"
    assert job["summary"].startswith("stopped on request after deleting")
    assert "Traceback" not in stderr
    assert "rows/s" in stderr  # the progress log
    gone = deleted_so_far(aw_db)
    # no half batch: what the job reports is exactly what is gone, in whole batches
    assert job["details"]["deleted"] == gone
    assert gone % SLOW["max_batch_size"] == 0
    assert 0 < gone < EXPIRED
    with aw_db.connect(autocommit=True) as conn:
        assert count(conn, "id LIKE 'l%'") == LIVE

        def awops_sessions_gone() -> bool:
            row = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = 'awops' AND datname = current_database()"""
            ).fetchone()
            return row == (0,)

        wait_until(awops_sessions_gone, timeout=10)

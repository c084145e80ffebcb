"""The daemon SIGKILLed mid-purge and restarted, a reload to an invalid file mid-purge, and
SIGTERM during every job: nothing lost, and the next run succeeds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.faults._helpers import KEEP_ROWS, counts, fill_attributes, start
from tests.fix_awops import clean_environ, wait_for
from tests.fix_dynamodb import create_actingweb_tables, dynamodb_client, protect_tables
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase, free_port


def ok_runs(port: int, job: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f'awops_job_runs_total{{job="{job}",status="ok"}}'):
            return float(line.split()[-1])
    return 0


def test_daemon_killed_mid_purge_after_a_rejected_reload_finishes_after_restart(
    aw_db: PgDatabase, tmp_path: Path
):
    fill_attributes(aw_db, 30_000)
    port = free_port()
    config = tmp_path / "awops.toml"
    good = (
        f'[metrics]\naddr = "127.0.0.1:{port}"\n[lock]\nlease_seconds = 3\n'
        '[jobs.pg-ttl-purge]\nschedule = "every 1s"\njitter_seconds = 0\n'
        "initial_batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\n"
        "max_rows_per_run = 3000\n"
    )
    config.write_text(good)
    log = tmp_path / "daemon.log"
    env = aw_db.awops_env()
    daemon = start(["run", "--config", str(config)], env, log)
    try:
        wait_for(lambda: counts(aw_db)[0] < 29_000, what="the purge to be under way")
        config.write_text("[jobs.pg-ttl-purge]\nmax_batch_size = 'lots'\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in log.read_text(), what="the rejected reload")
        assert "jobs.pg-ttl-purge.max_batch_size" in log.read_text()
        left_before_kill = counts(aw_db)[0]
        assert left_before_kill > 0, "still purging: the reload did not stop the run"
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert counts(aw_db)[1] == KEEP_ROWS
    config.write_text(good)
    restarted = start(["run", "--config", str(config)], env, log)
    try:
        # The dead daemon's lock went with its session: the new one takes over at once.
        wait_for(lambda: ok_runs(port, "pg-ttl-purge") >= 1, 90, "a purge run to finish")
        wait_for(lambda: counts(aw_db)[0] == 0, 60, "every expired row purged")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(30) == 0
    assert counts(aw_db) == (0, KEEP_ROWS)
    with aw_db.connect() as conn:
        row = conn.execute("SELECT done FROM awops_locks WHERE job = 'pg-ttl-purge'").fetchone()
    assert row == (True,)


JOBS = ["pg-health", "pg-ttl-purge", "pg-backup", "dynamodb-gsi", "dynamodb-ttl", "dynamodb-pitr"]


@pytest.fixture
def everything(aw_db: PgDatabase, moto: MotoServer, tmp_path: Path) -> dict[str, str]:
    client = dynamodb_client(moto)
    protect_tables(client, create_actingweb_tables(client), "demo_actingweb_attributes")
    fill_attributes(aw_db, 20_000)
    return {
        **aw_db.awops_env(),
        **moto.aws_env(),
        "AWOPS_BACKENDS": "postgresql,dynamodb",
        "AWOPS_BACKUP_TARGET": f"file://{tmp_path}/backups",
        "AWOPS_JOB_PG_TTL_PURGE_MAX_BATCH_SIZE": "100",
        "AWOPS_JOB_PG_TTL_PURGE_INITIAL_BATCH_SIZE": "100",
        "AWOPS_JOB_PG_TTL_PURGE_MIN_BATCH_SIZE": "100",
        # A hundred batches along the index, one session: long enough for the signal to land
        # mid-run (the heap walk takes the table in a few block ranges and is soon done).
        "AWOPS_JOB_PG_TTL_PURGE_WALK": "index",
        "AWOPS_JOB_PG_TTL_PURGE_WORKERS": "1",
    }


@pytest.mark.parametrize("job", JOBS)
def test_sigterm_during_a_run_stops_it_cleanly_and_the_next_run_succeeds(
    everything: dict[str, str], aw_db: PgDatabase, tmp_path: Path, job: str
):
    log = tmp_path / "run.log"
    process = start(["run-once", job, "--json"], everything, log)
    wait_for(lambda: "starting" in log.read_text(), what=f"{job} to start")
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode in (0, 1), log.read_text()
    assert "Traceback" not in log.read_text()
    (stopped,) = json.loads(out)["jobs"]
    assert stopped["status"] in ("ok", "problem", "error")
    assert counts(aw_db)[1] == KEEP_ROWS
    again = subprocess.run(
        [sys.executable, "-m", "awops", "run-once", job, "--json"],
        env=clean_environ(everything),
        capture_output=True,
        text=True,
        timeout=120,
    )
    (result,) = json.loads(again.stdout)["jobs"]
    assert result["status"] != "error", result
    if job == "pg-ttl-purge":
        assert counts(aw_db) == (0, KEEP_ROWS)


# A finalizer that runs while Python unloads its modules, after it has put the default signal
# handlers back: the window in which a SIGTERM used to kill a finished run-once. It hangs off
# ``os`` because the dicts of modules still loaded at that point are cleared then (awops
# freezes the garbage collector on its way out, so objects in cycles are never finalized).
SLOW_TEARDOWN = """
import os, time
class SlowTeardown:
    def __del__(self, write=os.write, sleep=time.sleep):
        write(2, b"tearing down\\n")
        sleep(3)
os.slow_teardown = SlowTeardown()
from awops.cli import main
main()
"""


def test_sigterm_after_run_once_has_reported_keeps_its_exit_code(aw_db: PgDatabase, tmp_path: Path):
    log = tmp_path / "run.log"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_TEARDOWN, "run-once", "pg-health", "--json"],
        env=clean_environ(aw_db.awops_env()),
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
    )
    wait_for(lambda: "tearing down" in log.read_text(), what="run-once to tear down")
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, log.read_text()
    (result,) = json.loads(out)["jobs"]
    assert result["status"] == "ok"

"""SIGTERM bounds awops' life and no child process outlives it.

Each test records, from /proc, every process descended from awops while the work runs (the
guard, pg_dump or pg_restore and pg_restore's parallel workers), stops awops, and checks by pid
that none of them is still running. Bounds are generous: ``shutdown_timeout_seconds`` plus a
margin far above what a stopped run needs and far below what the work left would take.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.faults._helpers import (
    KEEP_ROWS,
    alive,
    backups_in,
    counts,
    descendant_pids,
    fill_attributes,
    start,
)
from tests.fix_awops import run_awops, wait_for
from tests.fix_pg import PgDatabase, free_port

SHUTDOWN_TIMEOUT_SECONDS = 5
EXIT_BOUND_SECONDS = SHUTDOWN_TIMEOUT_SECONDS + 30
# Restoring slow_rows sleeps this long per row in a scratch database: 90 s, far past the bound.
SLOW_ROWS = 3000
SLOW_ROW_SECONDS = 0.03
PURGE_BATCH_ROWS = 200


def write_config(path: Path, jobs: str) -> Path:
    path.write_text(
        f'[metrics]\naddr = "127.0.0.1:{free_port()}"\n'
        f"[daemon]\nshutdown_timeout_seconds = {SHUTDOWN_TIMEOUT_SECONDS}\n{jobs}"
    )
    return path


def exits_within_bound(process: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return process.wait(EXIT_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(
            f"awops still running {EXIT_BOUND_SECONDS} s after SIGTERM "
            f"(shutdown_timeout_seconds {SHUTDOWN_TIMEOUT_SECONDS}):\n{log.read_text()[-3000:]}"
        ) from None


def reload(process: subprocess.Popen[bytes], log: Path) -> None:
    reloads = log.read_text().count("configuration reloaded")
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: log.read_text().count("configuration reloaded") > reloads, what="the reload")


def scratch_databases(db: PgDatabase) -> list[str]:
    with db.cluster.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
            ("awops\\_verify\\_%",),
        ).fetchall()
    return [name for (name,) in rows]


def copying_slow_rows(db: PgDatabase) -> bool:
    with db.cluster.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s AND query LIKE %s",
            ("awops\\_verify\\_%", "COPY public.slow_rows%"),
        ).fetchone()
    return bool(row and row[0])


def dump_waits_for_lock(db: PgDatabase) -> bool:
    with db.cluster.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%%'",
            (db.name,),
        ).fetchone()
    return bool(row and row[0])


@pytest.fixture
def slow_backup(aw_db: PgDatabase, tmp_path: Path) -> dict[str, str]:
    """A good backup whose restore takes minutes (a CHECK that sleeps in scratch databases)."""
    fill_attributes(aw_db, 1000)
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.awops_test_slow(n integer) RETURNS boolean"
            " LANGUAGE sql AS $$ SELECT CASE WHEN current_database() LIKE 'awops\\_verify\\_%'"
            f" THEN pg_sleep({SLOW_ROW_SECONDS}) IS NOT NULL ELSE true END $$"
        )
        conn.execute("CREATE TABLE public.slow_rows (n integer CHECK (public.awops_test_slow(n)))")
        conn.execute("INSERT INTO public.slow_rows SELECT generate_series(1, %s)", (SLOW_ROWS,))
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=f"file://{tmp_path}/backups",
        AWOPS_JOB_PG_BACKUP_VERIFY_RESTORE_JOBS="2",
    )
    done = run_awops("run-once", "pg-backup", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return env


def restoring(process: subprocess.Popen[bytes], db: PgDatabase) -> dict[int, str]:
    """Wait until pg_restore copies slow_rows; awops' descendants then."""
    wait_for(lambda: copying_slow_rows(db), 90, "pg_restore to copy slow_rows")
    children = descendant_pids(process.pid)
    assert "pg_restore" in children.values(), children
    return children


VERIFY_EVERY_SECOND = '[jobs.pg-backup-verify]\nschedule = "every 1s"\njitter_seconds = 0\n'


def test_sigterm_mid_purge_after_a_reload_stops_the_run_the_old_configuration_started(
    aw_db: PgDatabase, tmp_path: Path
):
    expired = 150_000
    fill_attributes(aw_db, expired)
    with aw_db.connect(autocommit=True) as conn:
        # Every batch takes at least 20 ms: the backlog lasts far longer than the test.
        conn.execute(
            "CREATE FUNCTION awops_test_pause() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER awops_test_pause AFTER DELETE ON attributes"
            " FOR EACH STATEMENT EXECUTE FUNCTION awops_test_pause()"
        )
    config = write_config(
        tmp_path / "awops.toml",
        '[jobs.pg-ttl-purge]\nschedule = "every 1s"\njitter_seconds = 0\n'
        f"initial_batch_size = {PURGE_BATCH_ROWS}\nmin_batch_size = {PURGE_BATCH_ROWS}\n"
        f"max_batch_size = {PURGE_BATCH_ROWS}\n"
        'walk = "index"\nworkers = 1\nmax_seconds_per_run = 3600\ntimeout_seconds = 3600\n',
    )
    log = tmp_path / "daemon.log"
    daemon = start(["run", "--config", str(config)], aw_db.awops_env(), log)
    try:
        wait_for(lambda: counts(aw_db)[0] < expired - 5 * PURGE_BATCH_ROWS, 60, "the purge")
        reload(daemon, log)  # a new runner; the purge is the old one's
        children = descendant_pids(daemon.pid)
        left_at_sigterm = counts(aw_db)[0]
        daemon.send_signal(signal.SIGTERM)
        assert exits_within_bound(daemon, log) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
    left, kept = counts(aw_db)
    assert kept == KEEP_ROWS
    assert left > 0, "the purge finished: the test did not stop it mid-run"
    # The batch in flight may commit; the run then stops, it does not purge the rest.
    assert left_at_sigterm - left <= 3 * PURGE_BATCH_ROWS, (left_at_sigterm, left)
    assert alive(children) == []
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("reloaded", [False, True], ids=["", "after-a-reload"])
def test_sigterm_mid_backup_kills_pg_dump_and_leaves_no_partial_backup(
    aw_db: PgDatabase, tmp_path: Path, reloaded: bool
):
    fill_attributes(aw_db, 1000)
    target = tmp_path / "backups"
    config = write_config(
        tmp_path / "awops.toml",
        '[jobs.pg-backup]\nschedule = "every 1s"\njitter_seconds = 0\n'
        "lock_wait_timeout_seconds = 600\n",
    )
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=f"file://{target}")
    log = tmp_path / "daemon.log"
    # pg_dump waits for this lock: the backup is under way for as long as the test holds it.
    with aw_db.connect() as locker:
        locker.execute("LOCK TABLE attributes IN ACCESS EXCLUSIVE MODE")
        daemon = start(["run", "--config", str(config)], env, log)
        try:
            wait_for(lambda: dump_waits_for_lock(aw_db), 60, "pg_dump to wait for the lock")
            if reloaded:
                reload(daemon, log)
            children = descendant_pids(daemon.pid)
            assert "pg_dump" in children.values(), children
            daemon.send_signal(signal.SIGTERM)
            assert exits_within_bound(daemon, log) == 0, log.read_text()
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert alive(children) == []
        locker.rollback()
    assert [name for name in backups_in(target) if not name.startswith(".")] == []
    assert "Traceback" not in log.read_text()


def test_sigterm_mid_verify_restore_stops_pg_restore_and_drops_the_scratch_database(
    aw_db: PgDatabase, slow_backup: dict[str, str], tmp_path: Path
):
    config = write_config(tmp_path / "awops.toml", VERIFY_EVERY_SECOND)
    log = tmp_path / "daemon.log"
    daemon = start(["run", "--config", str(config)], slow_backup, log)
    try:
        children = restoring(daemon, aw_db)
        daemon.send_signal(signal.SIGTERM)
        assert exits_within_bound(daemon, log) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert alive(children) == []
    assert scratch_databases(aw_db) == []
    assert "Traceback" not in log.read_text()


def test_sigterm_mid_verify_restore_stops_run_once(
    aw_db: PgDatabase, slow_backup: dict[str, str], tmp_path: Path
):
    config = write_config(tmp_path / "awops.toml", "")
    log = tmp_path / "run.log"
    process = start(
        ["run-once", "pg-backup-verify", "--json", "--config", str(config)], slow_backup, log
    )
    try:
        children = restoring(process, aw_db)
        process.send_signal(signal.SIGTERM)
        assert exits_within_bound(process, log) == 1, log.read_text()
        assert process.stdout is not None
        (result,) = json.loads(process.stdout.read())["jobs"]
    finally:
        if process.poll() is None:
            process.kill()
    assert result["status"] == "error"
    assert "stopped" in result["summary"], result
    assert alive(children) == []
    assert scratch_databases(aw_db) == []
    assert "Traceback" not in log.read_text()


def test_sigkill_of_the_daemon_mid_restore_kills_pg_restore_and_the_next_run_drops_its_database(
    aw_db: PgDatabase, slow_backup: dict[str, str], tmp_path: Path
):
    config = write_config(tmp_path / "awops.toml", VERIFY_EVERY_SECOND)
    log = tmp_path / "daemon.log"
    work = tmp_path / "work"
    work.mkdir()
    slow_backup = {**slow_backup, "AWOPS_JOB_PG_BACKUP_VERIFY_WORK_DIR": str(work)}
    daemon = start(["run", "--config", str(config)], slow_backup, log)
    try:
        children = restoring(daemon, aw_db)
        (left_behind,) = scratch_databases(aw_db)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    # With their parent: nothing re-parented to init and still writing.
    wait_for(lambda: alive(children) == [], 30, f"awops' children {children} to die")
    # Its staging directory stays behind (named after it), until the next verify.
    (staged,) = [p.name for p in work.iterdir()]
    assert staged.startswith(f"awops-verify-{daemon.pid}.")

    # The next run's newest backup restores quickly; it drops what the dead run left. The
    # dropped table is a deliberate row drop, so pg-backup's row-drop guard is off for it.
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE public.slow_rows")
    env = {**slow_backup, "AWOPS_JOB_PG_BACKUP_MAX_ROW_DROP_RATIO": "1"}
    assert run_awops("run-once", "pg-backup", env=env).returncode == 0
    verified = run_awops("run-once", "pg-backup-verify", "--json", env=env)
    (result,) = json.loads(verified.stdout)["jobs"]
    assert result["status"] == "ok", result
    assert f"dropping scratch database {left_behind}" in verified.stderr
    assert scratch_databases(aw_db) == []
    assert f"removing {work / staged}, left by an awops process that died" in verified.stderr
    assert list(work.iterdir()) == []

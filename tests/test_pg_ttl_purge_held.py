"""``pg-ttl-purge`` and rows or tables other sessions hold, against real PostgreSQL."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest

from awops.purge import walks
from tests.fix_pg import PgDatabase
from tests.test_pg_ttl_purge import JOB, count, job_env, remaining_ids

# Batches of exactly 100 rows, never cut off by statement_timeout on a busy machine.
FIXED_100 = {
    "initial_batch_size": 100,
    "min_batch_size": 100,
    "max_batch_size": 100,
    "batch_target_ms": 10_000,
}


def seed_ttls(conn: psycopg.Connection[Any], prefix: str, offsets: list[int]) -> None:
    """Rows ``<prefix>0, <prefix>1, ...`` (inserted in that order) expiring at now() + offset."""
    conn.execute(
        """INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)
           SELECT %s || (n - 1), 'b', 'oauth_tokens', 'n',
                  floor(extract(epoch FROM now()))::bigint + o
           FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(o, n) ORDER BY n""",
        (prefix, offsets),
    )


def hold(conn: psycopg.Connection[Any], where: str) -> int:
    """Lock the rows ``where`` selects FOR SHARE in ``conn``'s open transaction."""
    return len(conn.execute(f"SELECT 1 FROM attributes WHERE {where} FOR SHARE").fetchall())


@pytest.mark.parametrize("note_chars", [None, 1], ids=["noted", "note-full"])
def test_index_walk_moves_past_held_rows_sharing_one_ttl(
    aw_db: PgDatabase, in_process, monkeypatch: pytest.MonkeyPatch, note_chars: int | None
):
    """300 expired rows share one ttl and another session holds 150 of them: the keyset goes
    past the held rows (ttl, then ctid) instead of fetching them again batch after batch. With
    the note of held rows full, the batch's held rows are found again within its own part of
    the keyset, so each is counted once."""
    if note_chars is not None:
        monkeypatch.setattr(walks, "HELD_NOTE_MAX_CHARS", note_chars)
    with aw_db.connect(autocommit=True) as conn:
        seed_ttls(conn, "t", [-5000] * 300)  # the oldest, all with the same ttl
        seed_ttls(conn, "u", [-4000 + i for i in range(1000)])
    held_ids = {f"t{i}" for i in range(150)}  # the first 150 in index (and heap) order
    app = aw_db.connect()
    try:
        assert hold(app, "id IN (SELECT 't' || g FROM generate_series(0, 149) g)") == 150
        # max_seconds_per_run bounds a walk that spins, so this test ends either way
        runner = in_process(job_env(aw_db, walk="index", max_seconds_per_run=5, **FIXED_100))
        result = runner.run(JOB)
        assert result.status == "ok", result.summary
        assert result.details["walk"] == "index"
        assert result.details["deleted"] == 1150
        assert result.details["complete"] is True
        assert result.details["held_skipped"] == 150  # distinct rows, each counted once
        assert result.details["batches"] < 20  # 1,300 rows in batches of 100
        assert runner.value("awops_pg_ttl_held_rows_skipped_total", table="attributes") == 150
        with aw_db.connect() as conn:
            assert remaining_ids(conn) == held_ids
    finally:
        app.rollback()
        app.close()
    after = runner.run(JOB)
    assert after.status == "ok", after.summary
    assert after.details["deleted"] == 150
    with aw_db.connect() as conn:
        assert count(conn) == 0


def test_batches_that_delete_nothing_for_held_rows_stop_the_run_with_a_problem(
    aw_db: PgDatabase, in_process
):
    """Other sessions hold 1,000 expired rows in a row: after a few batches that delete
    nothing, the run stops and says how many rows other sessions hold."""
    with aw_db.connect(autocommit=True) as conn:
        seed_ttls(conn, "h", [-9000 + i for i in range(1000)])
        seed_ttls(conn, "f", [-5000 + i for i in range(200)])
    app = aw_db.connect()
    try:
        assert hold(app, "id LIKE 'h%'") == 1000
        runner = in_process(job_env(aw_db, walk="index", max_seconds_per_run=5, **FIXED_100))
        result = runner.run(JOB)
        assert result.status == "problem", result.summary
        assert result.details["deleted"] == 0
        assert result.details["complete"] is False
        held = result.details["held_skipped"]
        assert 0 < held < 1000
        assert f"other sessions hold the {held} expired rows" in result.summary
        assert "the next run carries on" in result.summary
        with aw_db.connect() as conn:
            assert count(conn) == 1200
    finally:
        app.rollback()
        app.close()
    after = runner.run(JOB)
    assert after.status == "ok", after.summary
    assert after.details["deleted"] == 1200


def test_row_lock_past_lock_timeout_is_not_reported_as_a_table_lock(aw_db: PgDatabase, in_process):
    """A batch that waits for a row lock (here: a row its ON DELETE CASCADE foreign key must
    delete, held by another session) says so; the table itself is not locked."""
    with aw_db.connect(autocommit=True) as conn:
        seed_ttls(conn, "r", [-100, -90, 3600])
        conn.execute(
            """CREATE TABLE grants (
                   id VARCHAR(255), bucket_name VARCHAR(255),
                   FOREIGN KEY (id, bucket_name) REFERENCES attributes ON DELETE CASCADE)"""
        )
        conn.execute("INSERT INTO grants VALUES ('r0', 'b')")
    runner = in_process(job_env(aw_db, lock_timeout_ms=50))
    with aw_db.connect() as app:
        app.execute("SELECT 1 FROM grants FOR UPDATE")
        result = runner.run(JOB)
    assert result.status == "error"
    assert "row locks other sessions hold" in result.summary
    assert "beyond lock_timeout_ms 50" in result.summary
    assert "is locked by another session" not in result.summary
    assert result.details["deleted"] == 0
    assert runner.value("awops_pg_ttl_lock_timeouts_total", table="attributes") == 3
    with aw_db.connect() as conn:
        assert count(conn) == 3
    again = runner.run(JOB)
    assert again.status == "ok", again.summary
    assert again.details["deleted"] == 2


def test_table_held_in_access_exclusive_mode_is_reported_as_a_table_lock(
    aw_db: PgDatabase, in_process
):
    """ALTER TABLE, VACUUM FULL or LOCK TABLE hold the table: even reading it waits, and no
    longer than lock_timeout_ms; the summary names the lock and the session holding it."""
    with aw_db.connect(autocommit=True) as conn:
        seed_ttls(conn, "r", [-100, -90, 3600])
    runner = in_process(job_env(aw_db, lock_timeout_ms=50, timeout_seconds=20))
    with aw_db.connect() as locker:
        locker.execute("LOCK TABLE attributes IN ACCESS EXCLUSIVE MODE")
        pid = locker.info.backend_pid
        result = runner.run(JOB)
        dry = runner.run(JOB, dry_run=True)
    for outcome in (result, dry):
        assert outcome.status == "error"
        assert "public.attributes is locked by another session" in outcome.summary
        assert "beyond lock_timeout_ms 50" in outcome.summary
        assert f"pid {pid} holds AccessExclusiveLock" in outcome.summary
        assert outcome.details["deleted"] == 0
    with aw_db.connect() as conn:
        assert count(conn) == 3
    assert runner.run(JOB).details["deleted"] == 2


def test_the_documented_grants_suffice_to_take_and_report_locks(aw_db: PgDatabase, in_process):
    """docs/security.md grants the purge SELECT and DELETE on the table: enough for each
    batch's LOCK TABLE ... IN ROW EXCLUSIVE MODE and for naming who holds the table."""
    role, password = "awops_" + secrets.token_hex(4), secrets.token_hex(12)
    with aw_db.connect(autocommit=True) as conn:
        seed_ttls(conn, "r", [-100, -90, 3600])
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'GRANT CONNECT ON DATABASE "{aw_db.name}" TO {role}')
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT, DELETE ON attributes TO {role}")
    env = job_env(aw_db, lock_timeout_ms=50) | {"PG_DB_USER": role, "PG_DB_PASSWORD": password}
    runner = in_process(env)
    with aw_db.connect() as locker:
        locker.execute("LOCK TABLE attributes IN SHARE MODE")  # as CREATE INDEX takes it
        pid = locker.info.backend_pid
        locked = runner.run(JOB)
    assert locked.status == "error"
    assert (
        "public.attributes is locked by another session beyond lock_timeout_ms 50 "
        f"(pid {pid} holds ShareLock)"
    ) in locked.summary
    result = runner.run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["deleted"] == 2

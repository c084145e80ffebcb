"""``pg-ttl-purge`` with ``vacuum_after = "auto"``: VACUUM (ANALYZE) after a large purge,
skipped with a reason when it cannot or should not run; never a failure of the purge."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fix_awops import clean_environ, wait_for
from tests.fix_pg import PgDatabase
from tests.test_pg_ttl_purge import JOB, count, job_env, seed_many

EXPIRED, LIVE = 3_000, 3_000


def table_stats(db: PgDatabase) -> dict[str, Any]:
    with db.connect() as conn:
        row = conn.execute(
            """SELECT s.vacuum_count, s.analyze_count, s.n_dead_tup, c.reltuples
               FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
               WHERE s.relname = 'attributes'"""
        ).fetchone()
    assert row is not None
    return {"vacuums": row[0], "analyzes": row[1], "dead": row[2], "reltuples": row[3]}


def other_sessions(db: PgDatabase) -> list[int]:
    with db.connect() as conn:
        rows = conn.execute(
            """SELECT pid FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()"""
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def purge_db(aw_db: PgDatabase) -> PgDatabase:
    """ActingWeb's table, half of it expired, autovacuum off for it (no VACUUM but ours)."""
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("ALTER TABLE attributes SET (autovacuum_enabled = false)")
        seed_many(conn, EXPIRED, LIVE)
        # The inserts reach the statistics as the session goes idle after this; ANALYZE
        # then sets the live rows, so the figures start exact.
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("ANALYZE attributes")
    return aw_db


def test_auto_vacuums_after_a_large_purge(purge_db: PgDatabase, in_process: Any) -> None:
    before = table_stats(purge_db)
    runner = in_process(job_env(purge_db, vacuum_after="auto"))
    result = runner.run(JOB)
    assert result.status == "ok", result.summary
    details = result.details
    assert details["deleted"] == EXPIRED
    assert details["vacuumed"] is True
    assert details["vacuum_seconds"] >= 0
    assert "vacuum_skipped_reason" not in details
    assert details["dead_rows_ratio_before"] == 0.0
    assert details["dead_rows_ratio_after"] == 0.0
    assert "vacuumed in" in result.summary
    # Once the purge's sessions are gone (each reports its counts as it ends), the statistics
    # still show no dead rows: the purge's deletions did not land on top of the VACUUM's figures.
    runner.close()
    wait_for(lambda: not other_sessions(purge_db), 30, "awops' sessions to end")
    after = table_stats(purge_db)
    assert after["vacuums"] == before["vacuums"] + 1
    assert after["analyzes"] == before["analyzes"] + 1
    assert after["dead"] == 0
    # The planner's estimate is the table as it is now, not as it was before the purge.
    assert after["reltuples"] == LIVE
    assert (
        runner.value("awops_pg_ttl_vacuum_runs_total", table="attributes", result="vacuumed") == 1
    )
    assert runner.value("awops_pg_ttl_vacuum_duration_seconds", table="attributes") is not None


def test_off_by_default_and_reports_the_dead_share(purge_db: PgDatabase, in_process: Any) -> None:
    before = table_stats(purge_db)
    result = in_process(job_env(purge_db)).run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["vacuumed"] is False
    assert result.details["vacuum_skipped_reason"] == "vacuum_after is off"
    assert result.details["dead_rows_ratio_before"] == 0.0
    assert result.details["dead_rows_ratio_after"] == 0.5  # 3,000 dead of 6,000
    assert table_stats(purge_db)["vacuums"] == before["vacuums"]


def test_a_small_share_deleted_is_left_to_autovacuum(purge_db: PgDatabase, in_process: Any) -> None:
    before = table_stats(purge_db)
    env = job_env(purge_db, vacuum_after="auto", vacuum_min_deleted_ratio=0.9)
    result = in_process(env).run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["vacuumed"] is False
    assert "under vacuum_min_deleted_ratio 0.9" in result.details["vacuum_skipped_reason"]
    assert table_stats(purge_db)["vacuums"] == before["vacuums"]


def test_dry_run_says_it_would_vacuum_and_vacuums_nothing(
    purge_db: PgDatabase, in_process: Any
) -> None:
    before = table_stats(purge_db)
    result = in_process(job_env(purge_db, vacuum_after="auto")).run(JOB, dry_run=True)
    assert result.status == "ok", result.summary
    assert result.details["would_vacuum"] is True
    assert result.details["vacuumed"] is False
    assert "would VACUUM (ANALYZE)" in result.summary
    assert table_stats(purge_db)["vacuums"] == before["vacuums"]
    with purge_db.connect() as conn:
        assert count(conn) == EXPIRED + LIVE


def test_a_vacuum_that_cannot_get_its_lock_is_skipped_not_failed(
    purge_db: PgDatabase, in_process: Any
) -> None:
    before = table_stats(purge_db)
    env = job_env(purge_db, vacuum_after="auto", vacuum_lock_timeout_ms=200)
    with purge_db.connect() as holder:
        # SHARE UPDATE EXCLUSIVE: what another VACUUM or ANALYZE holds. Deletes go on beside it.
        holder.execute("LOCK TABLE attributes IN SHARE UPDATE EXCLUSIVE MODE")
        runner = in_process(env)
        result = runner.run(JOB)
        holder.rollback()
    assert result.status == "ok", result.summary
    assert result.details["deleted"] == EXPIRED
    assert result.details["vacuumed"] is False
    assert "vacuum_lock_timeout_ms 200" in result.details["vacuum_skipped_reason"]
    assert "VACUUM skipped" in result.summary
    assert table_stats(purge_db)["vacuums"] == before["vacuums"]
    assert (
        runner.value("awops_pg_ttl_vacuum_runs_total", table="attributes", result="lock_timeout")
        == 1
    )


def test_a_role_that_does_not_own_the_table_purges_and_says_why_it_did_not_vacuum(
    purge_db: PgDatabase, in_process: Any
) -> None:
    role, password = f"purger_{purge_db.name}", "purger-password"
    with purge_db.connect(autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT SELECT, DELETE ON attributes TO {role}")
    before = table_stats(purge_db)
    env = job_env(purge_db, vacuum_after="auto")
    env.update(PG_DB_USER=role, PG_DB_PASSWORD=password)
    runner = in_process(env)
    result = runner.run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["deleted"] == EXPIRED
    assert result.details["vacuumed"] is False
    # The server's own words: "skipping "attributes" --- only table or database owner can
    # vacuum it" (PostgreSQL 15), "permission denied to vacuum ..." (17).
    reason = result.details["vacuum_skipped_reason"]
    assert "attributes" in reason and ("owner" in reason or "permission" in reason), reason
    assert table_stats(purge_db)["vacuums"] == before["vacuums"]
    assert (
        runner.value("awops_pg_ttl_vacuum_runs_total", table="attributes", result="not_permitted")
        == 1
    )


def test_sigterm_cancels_a_waiting_vacuum(purge_db: PgDatabase, tmp_path: Path) -> None:
    env = job_env(purge_db, vacuum_after="auto", vacuum_lock_timeout_ms=600_000)
    with purge_db.connect() as holder:
        holder.execute("LOCK TABLE attributes IN SHARE UPDATE EXCLUSIVE MODE")
        with (tmp_path / "stderr.log").open("w") as log:
            awops = subprocess.Popen(
                [sys.executable, "-m", "awops", "run-once", JOB, "--json"],
                env=clean_environ(env),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        try:
            wait_for(lambda: vacuum_backends(purge_db), 60, "the VACUUM to wait for its lock")
            awops.send_signal(signal.SIGTERM)
            out, _ = awops.communicate(timeout=60)
        finally:
            if awops.poll() is None:
                awops.kill()
                awops.wait()
        assert vacuum_backends(purge_db) == []
        holder.rollback()
    (job,) = json.loads(out)["jobs"]
    assert job["details"]["deleted"] == EXPIRED, job["summary"]
    assert job["details"]["vacuumed"] is False
    assert job["details"]["vacuum_skipped_reason"] == "stopped on request"


def vacuum_backends(db: PgDatabase) -> list[int]:
    with db.connect() as conn:
        rows = conn.execute(
            """SELECT pid FROM pg_stat_activity
               WHERE datname = current_database() AND query LIKE 'VACUUM%%'
                 AND state = 'active' AND pid <> pg_backend_pid()"""
        ).fetchall()
    return [row[0] for row in rows]


def test_vacuum_sql_quotes_the_table(purge_db: PgDatabase, in_process: Any) -> None:
    """A schema whose name needs quoting is vacuumed like any other."""
    with purge_db.connect(autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Odd Schema"')
        conn.execute('CREATE TABLE "Odd Schema".attributes (LIKE public.attributes INCLUDING ALL)')
        conn.execute('INSERT INTO "Odd Schema".attributes SELECT * FROM public.attributes')
    env = job_env(purge_db, vacuum_after="auto")
    env["PG_DB_SCHEMA"] = "Odd Schema"
    result = in_process(env).run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["vacuumed"] is True, result.details
    with purge_db.connect() as conn:
        row = conn.execute(
            """SELECT vacuum_count FROM pg_stat_user_tables
               WHERE schemaname = 'Odd Schema' AND relname = 'attributes'"""
        ).fetchone()
    assert row is not None and row[0] == 1

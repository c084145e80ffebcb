"""pg-health against real clusters: each figure is made to cross its threshold for real.

Thresholds are set low through ``AWOPS_JOB_PG_HEALTH_*`` so a fraction of a second is enough;
each test reads the figure back from a fresh registry.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from awops import ttl_backlog
from tests.fix_awops import wait_for
from tests.fix_pg import PgCluster, PgDatabase, free_port, pause_replay
from tests.fix_pg_health import JOB, actingweb_database, in_background, options


@pytest.fixture(scope="module")
def small_cluster() -> Iterator[PgCluster]:
    """A private cluster with few connections and no autovacuum, for the tests that need that.

    One cluster serves the three of them (each in its own database): initdb is the slow part.
    """
    cluster = PgCluster(max_connections=10, extra_settings={"autovacuum": "off"}).init().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_healthy_database_is_ok_and_every_figure_is_recorded(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actors (id, creator, passphrase)"
            " SELECT 'a' || i, 'c', 'p' FROM generate_series(1, 50) i"
        )
    # A session's counts reach the statistics when it ends; ANALYZE after, not beside them.
    wait_for(
        lambda: _table_stat(aw_db, "actors", "n_live_tup") == 50, what="the insert's statistics"
    )
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("ANALYZE actors")
    runner = in_process(aw_db.awops_env())

    result = runner.run(JOB)

    assert result.status == "ok", result.summary
    assert "answered in" in result.summary
    assert runner.value("awops_pg_up") == 1
    assert runner.value("awops_pg_max_connections") == 60
    assert runner.value("awops_pg_connections", state="active") >= 1  # the check's own
    assert runner.value("awops_pg_in_recovery") == 0
    assert runner.value("awops_pg_replication_lag_seconds") == 0
    assert runner.value("awops_pg_database_size_bytes") > 0
    assert runner.value("awops_pg_xid_age") > 0
    assert runner.value("awops_pg_table_live_rows", table="actors") == 50
    assert runner.value("awops_pg_table_last_analyze_timestamp_seconds", table="actors") > 0
    assert runner.value("awops_pg_ttl_expired_rows", table="attributes") == 0
    assert runner.value("awops_pg_figure_available", figure="ttl_backlog") == 1
    assert runner.value("awops_pg_pool_max_connections") == 10
    assert runner.value("awops_pg_pool_requests_total") >= 1
    details = result.details
    assert details["max_connections_ratio"] == 0.8
    assert details["unavailable"] == {}
    assert details["ttl"]["max_ttl_expired_age_seconds"] == 3600
    # The signals of trouble, all quiet: no lock waits, no slots, no archiving, no deadlocks.
    assert runner.value("awops_pg_longest_lock_wait_seconds") == 0
    assert details["blocking"]["waiting"] is None
    assert details["blocking"]["max_lock_wait_seconds"] == 60
    assert runner.value("awops_pg_multixact_age") >= 0
    assert details["max_multixact_age"] == 1_000_000_000
    assert runner.value("awops_pg_archiver_enabled") == 0
    assert runner.value("awops_pg_archiver_failing") == 0
    assert details["wal_archiving"] == {"archive_mode": "off", "archiving": False}
    assert details["replication_slots"]["slots"] == {}
    assert runner.value("awops_pg_replication_slot_wal_limit_bytes") == 1024**3  # max_wal_size
    assert runner.value("awops_pg_deadlocks") == 0
    assert details["new_deadlocks"] is None  # the first run has nothing to compare with
    assert runner.value("awops_pg_table_mod_since_analyze_rows", table="actors") == 0
    assert details["tables"]["actors"]["analyze_age_seconds"] >= 0


def test_expired_row_backlog_older_than_threshold(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp) VALUES"
            " ('a1', 'b:old', 'b', 'old', extract(epoch FROM now())::bigint - 3600),"
            " ('a1', 'b:new', 'b', 'new', extract(epoch FROM now())::bigint - 5),"
            " ('a1', 'b:future', 'b', 'future', extract(epoch FROM now())::bigint + 3600),"
            " ('a1', 'b:never', 'b', 'never', NULL)"
        )
    runner = in_process(aw_db.awops_env(**options(max_ttl_expired_age_seconds=600)))

    result = runner.run(JOB)

    assert result.status == "problem"
    assert "oldest expired row in attributes expired" in result.summary
    assert "above max_ttl_expired_age_seconds 600" in result.summary
    assert runner.value("awops_pg_ttl_expired_rows", table="attributes") == 2
    assert runner.value("awops_pg_ttl_oldest_expired_age_seconds", table="attributes") >= 3600


def test_large_backlog_is_the_planners_estimate_past_the_count_cap(aw_db: PgDatabase, in_process):
    expired = ttl_backlog.COUNT_CAP * 3
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)"
            " SELECT 'a1', 'b:' || g, 'b', 'n' || g,"
            "   extract(epoch FROM now())::bigint - 60 - (CASE WHEN g <= %s THEN g ELSE -2 * g END)"
            " FROM generate_series(1, %s) g",
            (expired, expired + 5000),
        )
        conn.execute("ANALYZE attributes")
    runner = in_process(aw_db.awops_env(**options(max_ttl_expired_rows=ttl_backlog.COUNT_CAP)))

    result = runner.run(JOB)

    ttl = result.details["ttl"]
    assert ttl["expired_rows_exact"] is False
    # Not the cap itself: the estimate, from the column's histogram, near the real count.
    assert 0.8 * expired <= ttl["expired_rows"] <= 1.2 * expired
    assert runner.value("awops_pg_ttl_expired_rows", table="attributes") == ttl["expired_rows"]
    assert result.status == "problem"
    assert f"about {ttl['expired_rows']} expired rows in attributes" in result.summary


def test_idle_in_transaction_session_holding_a_lock_with_a_waiter(aw_db: PgDatabase, in_process):
    holder = aw_db.connect()
    waiter = aw_db.connect()
    try:
        holder.execute("LOCK TABLE actors IN ACCESS EXCLUSIVE MODE")  # opens a transaction
        holder_pid = holder.info.backend_pid
        with in_background(lambda: waiter.execute("LOCK TABLE actors")):
            runner = in_process(
                aw_db.awops_env(
                    **options(max_idle_in_transaction_seconds=0.2, max_lock_waiting_sessions=0)
                )
            )
            wait_for(
                lambda: holder_pid in waiter_blockers(aw_db), what="the waiter to queue on the lock"
            )
            time.sleep(0.3)

            result = runner.run(JOB)

            holder.rollback()
    finally:
        holder.close()
        waiter.close()
    assert result.status == "problem"
    assert "session idle in transaction" in result.summary
    assert f"(pid {holder_pid}) above max_idle_in_transaction_seconds 0.2" in result.summary
    assert "1 sessions waiting on locks, above max_lock_waiting_sessions 0" in result.summary
    assert "max_transaction_seconds" not in result.summary  # 300 s by default
    assert runner.value("awops_pg_idle_in_transaction_seconds") >= 0.3
    assert runner.value("awops_pg_lock_waiting_sessions") == 1
    assert runner.value("awops_pg_connections", state="idle_in_transaction") == 1
    assert result.details["idle_in_transaction_pid"] == holder_pid
    # The exclusive lock does not hold the check up: only the locked table's size is skipped.
    assert "unavailable" not in result.summary
    assert result.details["tables"]["actors"]["size_bytes"] is None
    assert result.details["tables"]["attributes"]["size_bytes"] > 0


def waiter_blockers(db: PgDatabase) -> list[int]:
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT unnest(pg_blocking_pids(pid)) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock'"
        ).fetchall()
    return [row[0] for row in rows]


def test_long_running_transaction(aw_db: PgDatabase, in_process):
    busy = aw_db.connect()
    busy_pid = busy.info.backend_pid
    runner = in_process(aw_db.awops_env(**options(max_transaction_seconds=0.2)))
    try:
        busy.execute("SELECT 1")  # the transaction starts here
        with in_background(lambda: _ignore_cancel(busy, "SELECT pg_sleep(30)")):
            wait_for(lambda: _state(aw_db, busy_pid) == "active", what="the long query to run")
            time.sleep(0.3)

            result = runner.run(JOB)

            busy.cancel_safe()
    finally:
        busy.close()
    assert result.status == "problem"
    assert f"(pid {busy_pid}) above max_transaction_seconds 0.2" in result.summary
    assert "idle in transaction" not in result.summary
    assert runner.value("awops_pg_longest_transaction_seconds") >= 0.3
    assert result.details["longest_transaction_pid"] == busy_pid


def _ignore_cancel(conn: psycopg.Connection[Any], query: str) -> None:
    try:
        conn.execute(query)
    except psycopg.errors.QueryCanceled:
        conn.rollback()


def _state(db: PgDatabase, pid: int) -> str | None:
    with db.connect(autocommit=True) as conn:
        row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row[0] if row else None


def test_exhausted_pool_with_waiters(aw_db: PgDatabase, in_process):
    env = aw_db.awops_env(PG_POOL_MAX_SIZE="2", PG_POOL_TIMEOUT="20")
    runner = in_process(env | options(max_pool_wait_seconds=0.2))
    pool = runner.resources.pg.pool
    held = [pool.getconn(), pool.getconn()]
    try:
        with in_background(lambda: pool.putconn(pool.getconn())):
            wait_for(lambda: pool.get_stats()["requests_waiting"] == 1, what="a queued request")

            result = runner.run(JOB)

            for conn in held:
                pool.putconn(conn)
            held = []
    finally:
        for conn in held:
            pool.putconn(conn)
    assert result.status == "problem"
    assert result.summary.startswith(
        "pool of 2/2 gave no connection within max_pool_wait_seconds 0.2 (1 requests waiting)"
    )
    # The server figures were still read, over a session of the check's own.
    assert runner.value("awops_pg_up") == 1
    assert runner.value("awops_pg_connections", state="idle") >= 2
    assert runner.value("awops_pg_pool_connections", state="waiting") == 1
    assert runner.value("awops_pg_pool_connections", state="idle") == 0
    assert runner.value("awops_pg_pool_wait_seconds") >= 0.2
    assert runner.value("awops_pg_pool_requests_queued_total") >= 2
    assert runner.value("awops_pg_pool_requests_errors_total") >= 1  # the check's own timeout


def test_connections_near_max_connections(small_cluster: PgCluster, in_process):
    db = actingweb_database(small_cluster)
    runner = in_process(db.awops_env(PG_POOL_MAX_SIZE="1"))
    sessions = [db.connect(autocommit=True) for _ in range(8)]
    try:
        result = runner.run(JOB)
    finally:
        for conn in sessions:
            conn.close()
    assert result.status == "problem"
    assert "9 of max_connections 10 in use (90%), above max_connections_ratio 0.8" in (
        result.summary
    )
    assert runner.value("awops_pg_max_connections") == 10
    assert runner.value("awops_pg_connections", state="idle") == 8
    assert runner.value("awops_pg_connections", state="active") == 1
    assert result.details["connections_total"] == 9


def test_dead_rows_after_a_mass_update_with_autovacuum_off(small_cluster: PgCluster, in_process):
    db = actingweb_database(small_cluster)
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actors (id, creator, passphrase)"
            " SELECT 'a' || i, 'c', 'p' FROM generate_series(1, 2000) i"
        )
        conn.execute("UPDATE actors SET passphrase = 'q'")
    wait_for(
        lambda: _table_stat(db, "actors", "n_dead_tup") == 2000, what="the update's statistics"
    )
    runner = in_process(db.awops_env(**options(min_dead_rows=100)))

    result = runner.run(JOB)

    assert result.status == "problem"
    assert "dead rows above max_dead_rows_ratio 0.5: actors 2000 dead of 2000 live" in (
        result.summary
    )
    assert runner.value("awops_pg_table_dead_rows", table="actors") == 2000
    assert runner.value("awops_pg_table_live_rows", table="actors") == 2000
    assert runner.value("awops_pg_table_last_vacuum_timestamp_seconds", table="actors") == 0
    assert result.details["tables"]["actors"]["dead_rows_ratio"] == 1.0


def _table_stat(db: PgDatabase, table: str, column: str) -> int:
    with db.connect(autocommit=True) as conn:
        query = sql.SQL("SELECT {} FROM pg_stat_user_tables WHERE relname = %s")
        row = conn.execute(query.format(sql.Identifier(column)), (table,)).fetchone()
    return int(row[0]) if row else 0


def test_hot_standby_with_replay_paused_reports_lag(
    small_cluster: PgCluster, pg_standby_factory, in_process
):
    db = actingweb_database(small_cluster)
    standby = pg_standby_factory(small_cluster)
    replica = PgDatabase(standby, db.name)
    with db.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO actors (id, creator, passphrase) VALUES ('first', 'c', 'p')")
        wait_for(lambda: _replayed(replica, "first"), what="the first commit to replay")
        pause_replay(standby)
        conn.execute("INSERT INTO actors (id, creator, passphrase) VALUES ('second', 'c', 'p')")
    wait_for(lambda: _wal_outstanding(replica), what="WAL received but not replayed")
    time.sleep(0.6)
    runner = in_process(replica.awops_env(**options(max_replication_lag_seconds=0.5)))

    result = runner.run(JOB)

    assert result.status == "problem"
    assert "replication lag" in result.summary
    assert "above max_replication_lag_seconds 0.5" in result.summary
    assert runner.value("awops_pg_in_recovery") == 1
    assert runner.value("awops_pg_replication_lag_seconds") >= 0.6
    assert result.details["in_recovery"] is True
    assert result.details["unavailable"] == {}


def _replayed(db: PgDatabase, actor: str) -> bool:
    with db.connect(autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM actors WHERE id = %s", (actor,)).fetchone() is not None


def _wal_outstanding(db: PgDatabase) -> bool:
    with db.connect(autocommit=True) as conn:
        row = conn.execute("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()").fetchone()
    return bool(row and row[0])


def _create_role(db: PgDatabase, *grants: str) -> tuple[str, str]:
    role, password = "awops_" + secrets.token_hex(4), secrets.token_hex(12)
    with db.connect(autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        for grant in grants:
            conn.execute(grant.format(role=role))
    return role, password


def test_minimal_role_pg_monitor_and_select_reads_every_figure(aw_db: PgDatabase, in_process):
    role, password = _create_role(
        aw_db,
        "GRANT pg_monitor TO {role}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
    )
    runner = in_process(aw_db.awops_env(PG_DB_USER=role, PG_DB_PASSWORD=password))

    result = runner.run(JOB)

    assert result.status == "ok", result.summary
    assert result.details["unavailable"] == {}
    assert runner.value("awops_pg_figure_available", figure="ttl_backlog") == 1
    assert runner.value("awops_pg_figure_available", figure="longest_transaction") == 1
    assert runner.value("awops_pg_figure_available", figure="blocking_chain") == 1
    assert runner.value("awops_pg_ttl_expired_rows", table="attributes") == 0


def test_role_without_grants_names_what_it_cannot_read(aw_db: PgDatabase, in_process):
    role, password = _create_role(aw_db)
    runner = in_process(aw_db.awops_env(PG_DB_USER=role, PG_DB_PASSWORD=password))

    result = runner.run(JOB)

    assert result.status == "problem"
    assert "unavailable: " in result.summary
    assert "ttl_backlog (permission denied for table attributes)" in result.summary
    assert "longest_transaction (other roles' sessions need pg_monitor)" in result.summary
    assert runner.value("awops_pg_up") == 1
    assert runner.value("awops_pg_figure_available", figure="ttl_backlog") == 0
    assert runner.value("awops_pg_figure_available", figure="database_size") == 1
    assert runner.value("awops_pg_database_size_bytes") > 0
    assert set(result.details["unavailable"]) == {
        "longest_transaction",
        "idle_in_transaction",
        "lock_waiting_sessions",
        "blocking_chain",
        "ttl_backlog",
    }
    assert runner.value("awops_pg_figure_available", figure="blocking_chain") == 0
    # The rest needs no grant at all.
    for figure in (
        "multixact_age",
        "deadlocks_and_conflicts",
        "wal_archiving",
        "replication_slots",
    ):
        assert runner.value("awops_pg_figure_available", figure=figure) == 1, figure


def test_unreachable_server_is_an_error_and_pg_down(aw_db: PgDatabase, in_process):
    nobody = str(free_port())
    runner = in_process(aw_db.awops_env(PG_DB_PORT=nobody, **options(max_pool_wait_seconds=0.2)))

    result = runner.run(JOB)

    assert result.status == "error"
    assert f"PostgreSQL postgres@127.0.0.1:{nobody}/{aw_db.name} unreachable" in result.summary
    assert aw_db.cluster.password not in result.summary
    assert runner.value("awops_pg_up") == 0

"""pg-health's signals of slow trouble, provoked for real: multixact age, statistics gone
stale, a blocking chain, deadlocks and recovery conflicts.

A private cluster with autovacuum off serves the tests whose counts must stay as made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.fix_awops import wait_for
from tests.fix_pg import PgCluster, PgDatabase
from tests.fix_pg_health import (
    JOB,
    actingweb_database,
    in_background,
    options,
    scalar,
    waiting_on_lock,
)


@pytest.fixture(scope="module")
def quiet_cluster() -> Iterator[PgCluster]:
    """A private cluster without autovacuum, shared by the tests of this module that need one."""
    cluster = PgCluster(extra_settings={"autovacuum": "off"}).init().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


# -- multixacts and statistics ----------------------------------------------------------------


def test_multixact_age_rises_with_shared_row_locks(quiet_cluster: PgCluster, in_process):
    db = actingweb_database(quiet_cluster)
    with db.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO actors (id, creator, passphrase) VALUES ('shared', 'c', 'p')")
    runner = in_process(db.awops_env(**options(max_multixact_age=0)))
    before = runner.run(JOB).details["multixact_age"]
    # Two transactions share a row lock: the row's xmax becomes a multixact holding both.
    first, second = db.connect(), db.connect()
    try:
        for session in (first, second):
            session.execute("SELECT 1 FROM actors WHERE id = 'shared' FOR SHARE")
        first.commit()
        second.commit()
    finally:
        first.close()
        second.close()

    result = runner.run(JOB)

    assert result.details["multixact_age"] > before
    assert result.status == "problem"
    assert f"multixact ID age {result.details['multixact_age']} of database " in result.summary
    assert "above max_multixact_age 0" in result.summary
    assert runner.value("awops_pg_multixact_age") == result.details["multixact_age"]


def test_stale_statistics_of_attributes(quiet_cluster: PgCluster, in_process):
    db = actingweb_database(quiet_cluster)
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name)"
            " SELECT 'a', 'b:' || g, 'b', 'n' FROM generate_series(1, 2000) g"
        )
    # A session's counts reach the statistics when it ends; ANALYZE after, not beside them.
    wait_for(lambda: _table_stat(db, "n_live_tup") == 2000, what="the insert's statistics")
    with db.connect(autocommit=True) as conn:
        conn.execute("ANALYZE attributes")
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "UPDATE attributes SET name = 'm' WHERE split_part(bucket_name, ':', 2)::int <= 1500"
        )
    modified = 1500
    wait_for(
        lambda: _table_stat(db, "n_mod_since_analyze") == modified, what="the update's statistics"
    )
    thresholds = options(
        min_mod_since_analyze_rows=100,
        max_analyze_age_seconds=0.001,
        max_vacuum_age_seconds=0.001,
        min_dead_rows=100,
    )
    runner = in_process(db.awops_env(**thresholds))

    result = runner.run(JOB)

    assert result.status == "problem"
    summary = result.summary
    assert (
        "rows changed since the last analyze above max_mod_since_analyze_ratio 0.5: "
        f"attributes {modified} changed of 2000 live (last analyze " in summary
    )
    assert "not analyzed within max_analyze_age_seconds 0.001: attributes (last analyze " in summary
    assert f"s ago, {modified} rows changed)" in summary
    assert (
        "not vacuumed within max_vacuum_age_seconds 0.001: "
        f"attributes (last vacuum never, {modified} dead rows)" in summary
    )
    table = result.details["tables"]["attributes"]
    assert table["mod_since_analyze_rows"] == modified
    assert table["vacuum_age_seconds"] is None
    assert result.details["max_mod_since_analyze_ratio"] == 0.5
    assert runner.value("awops_pg_table_mod_since_analyze_rows", table="attributes") == modified

    with db.connect(autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE attributes")
    wait_for(lambda: _table_stat(db, "n_mod_since_analyze") == 0, what="the analyze")

    fresh = runner.run(JOB)

    assert "attributes" not in fresh.summary, fresh.summary
    assert runner.value("awops_pg_table_mod_since_analyze_rows", table="attributes") == 0


def _table_stat(db: PgDatabase, column: str) -> int:
    query = f"SELECT {column} FROM pg_stat_user_tables WHERE relname = 'attributes'"
    return int(scalar(db, query) or 0)


# -- locks, deadlocks, conflicts -------------------------------------------------------------

MARKER = "awops-query-text-must-not-leak"


def test_blocking_chain_names_pids_and_states_never_query_text(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actors (id, creator, passphrase) VALUES ('r1', 'c', 'p'), ('r2', 'c', 'p')"
        )
    head, middle, tail = aw_db.connect(), aw_db.connect(), aw_db.connect()
    pids = {
        name: s.info.backend_pid for name, s in (("head", head), ("middle", middle), ("tail", tail))
    }
    update = f"UPDATE actors SET passphrase = '{MARKER}' WHERE id = %s /* {MARKER} */"
    try:
        head.execute(update, ("r1",))  # holds r1, then sits idle in its transaction
        middle.execute(update, ("r2",))  # holds r2
        with in_background(lambda: _ignore_errors(tail, update, "r2")):  # waits for middle
            wait_for(lambda: waiting_on_lock(aw_db, pids["tail"]), what="tail to wait")
            with in_background(lambda: _ignore_errors(middle, update, "r1")):  # waits for head
                wait_for(lambda: waiting_on_lock(aw_db, pids["middle"]), what="middle to wait")
                runner = in_process(aw_db.awops_env(**options(max_lock_wait_seconds=0)))

                result = runner.run(JOB)

                head.rollback()
            middle.rollback()
    finally:
        for session in (head, middle, tail):
            session.close()
    assert result.status == "problem"
    assert (
        f"pid {pids['tail']} (active, transaction open " in result.summary
        and f"for ShareLock on transactionid, blocked by pid {pids['middle']} (active, "
        in result.summary
        and f"behind pid {pids['head']} (idle in transaction, transaction open " in result.summary
        and "at the head of the chain, above max_lock_wait_seconds 0" in result.summary
    ), result.summary
    blocking = result.details["blocking"]
    assert blocking["waiting"]["pid"] == pids["tail"]
    assert blocking["waiting"]["state"] == "active"
    assert blocking["waiting"]["wait_seconds"] > 0
    assert blocking["wait_measured_from"] == "lock_wait_start"
    assert [s["pid"] for s in blocking["blocked_by"]] == [pids["middle"]]
    assert blocking["blocked_by"][0]["waiting_on_lock"] is True
    assert blocking["chain_head"]["pid"] == pids["head"]
    assert blocking["chain_head"]["state"] == "idle in transaction"
    assert blocking["waiting_sessions"] == 2
    assert runner.value("awops_pg_longest_lock_wait_seconds") == pytest.approx(
        blocking["waiting"]["wait_seconds"], abs=0.001
    )
    everything = json.dumps(result.details) + result.summary
    assert MARKER not in everything
    assert "UPDATE" not in everything


def _ignore_errors(conn: psycopg.Connection[Any], query: str, *params: Any) -> None:
    try:
        conn.execute(query, params)
    except psycopg.Error:
        conn.rollback()


def test_deadlocks_since_the_previous_run(quiet_cluster: PgCluster, in_process):
    db = actingweb_database(quiet_cluster)
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actors (id, creator, passphrase) VALUES ('d1', 'c', 'p'), ('d2', 'c', 'p')"
        )
    runner = in_process(db.awops_env())
    first = runner.run(JOB)
    assert first.details["new_deadlocks"] is None
    assert first.details["deadlocks"] == 0

    one, other = db.connect(), db.connect()
    update = "UPDATE actors SET passphrase = 'x' WHERE id = %s"
    try:
        for session in (one, other):
            session.execute("SET deadlock_timeout = '100ms'")
        one.execute(update, ("d1",))
        other.execute(update, ("d2",))
        with in_background(lambda: _ignore_errors(one, update, "d2")):
            wait_for(lambda: waiting_on_lock(db, one.info.backend_pid), what="a lock wait")
            _ignore_errors(other, update, "d1")  # closes the cycle: one of the two is chosen
            other.rollback()
        one.rollback()
    finally:
        one.close()
        other.close()
    wait_for(
        lambda: (
            scalar(db, "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", db.name) == 1
        ),
        what="the deadlock in pg_stat_database",
    )

    result = runner.run(JOB)

    assert result.status == "problem"
    assert (
        f"1 deadlocks in database {db.name} since the previous run, above max_new_deadlocks 0"
        in result.summary
    )
    assert result.details["new_deadlocks"] == 1
    assert runner.value("awops_pg_deadlocks") == 1

    quiet = runner.run(JOB)

    assert "deadlock" not in quiet.summary
    assert quiet.details["new_deadlocks"] == 0


def test_recovery_conflict_on_a_replica(pg_cluster_factory, pg_standby_factory, in_process):
    primary = pg_cluster_factory(extra_settings={"max_standby_streaming_delay": "0"})
    db = actingweb_database(primary)
    standby = pg_standby_factory(primary)
    replica = PgDatabase(standby, db.name)
    wait_for(lambda: _table_exists(replica), what="the schema to replay")
    runner = in_process(replica.awops_env())
    assert runner.run(JOB).details["new_conflicts"] is None

    reader = replica.connect()
    try:
        reader.execute("SELECT count(*) FROM actors")  # holds AccessShareLock on the replica
        with db.connect() as conn:
            conn.execute("LOCK TABLE actors IN ACCESS EXCLUSIVE MODE")  # replayed: a conflict
            conn.commit()
        wait_for(
            lambda: (
                scalar(
                    replica,
                    "SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = %s",
                    db.name,
                )
                >= 1
            ),
            what="the conflict to be counted",
        )
    finally:
        reader.close()

    result = runner.run(JOB)

    assert result.status == "problem"
    assert (
        f"queries cancelled by recovery conflicts in database {db.name} since the previous run"
        in (result.summary)
    )
    assert "lock 1" in result.summary
    assert "above max_new_conflicts 0" in result.summary
    assert result.details["conflicts_by_reason"]["lock"] == 1
    assert runner.value("awops_pg_conflicts") >= 1


def _table_exists(db: PgDatabase) -> bool:
    try:
        return scalar(db, "SELECT to_regclass('actors') IS NOT NULL")
    except psycopg.OperationalError:
        return False

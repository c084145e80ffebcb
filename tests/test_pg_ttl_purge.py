"""``pg-ttl-purge`` against real PostgreSQL: exactly the expired rows go, safely."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from awops.jobs import pg_ttl_purge
from awops.purge import walks
from awops.purge.run import batch_settings, next_batch_size
from awops.purge.target import Expiry, PurgeTable
from awops.runner import JobRunner
from tests.fix_awops import run_awops
from tests.fix_pg import PgDatabase
from tests.fix_schema import create_actingweb_schema

JOB = "pg-ttl-purge"
YEAR = 365 * 86400


def seed(
    conn: psycopg.Connection[Any], offsets: Sequence[int | None], schema: str = "public"
) -> None:
    """Rows ``r0, r1, ...`` whose ttl is the database's now() plus each offset (None: NULL)."""
    conn.execute(
        psycopg.sql.SQL(
            """INSERT INTO {} (id, bucket_name, bucket, name, data, ttl_timestamp)
               SELECT 'r' || (n - 1), 'b', 'oauth_tokens', 'n',
                      jsonb_build_object('chain_id', 'c' || (n %% 7)),
                      floor(extract(epoch FROM now()))::bigint + o
               FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(o, n)"""
        ).format(psycopg.sql.Identifier(schema, "attributes")),
        (list(offsets),),
    )


def seed_many(conn: psycopg.Connection[Any], expired: int, live: int) -> None:
    """``expired`` rows an hour past their ttl, ``live`` rows half NULL, half a day ahead."""
    conn.execute(
        """INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)
           SELECT 'x' || g, 'b', 'oauth_tokens', 'n',
                  floor(extract(epoch FROM now()))::bigint - 3600 - g %% 1000
           FROM generate_series(1, %s) g""",
        (expired,),
    )
    conn.execute(
        """INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)
           SELECT 'l' || g, 'b', 'oauth_tokens', 'n',
                  CASE WHEN g %% 2 = 0 THEN NULL
                       ELSE floor(extract(epoch FROM now()))::bigint + 86400 END
           FROM generate_series(1, %s) g""",
        (live,),
    )


def remaining_ids(conn: psycopg.Connection[Any], schema: str = "public") -> set[str]:
    query = psycopg.sql.SQL("SELECT id FROM {}").format(
        psycopg.sql.Identifier(schema, "attributes")
    )
    return {row[0] for row in conn.execute(query)}


def count(conn: psycopg.Connection[Any], where: str = "true") -> int:
    row = conn.execute(f"SELECT count(*) FROM attributes WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def job_env(db: PgDatabase, **options: Any) -> dict[str, str]:
    env = db.awops_env()
    for key, value in options.items():
        env[f"AWOPS_JOB_PG_TTL_PURGE_{key.upper()}"] = str(value).lower()
    return env


def test_deletes_exactly_the_expired_rows_and_records_metrics(aw_db: PgDatabase, in_process):
    offsets = [-10_000, -600, -2, None, None, 3600, 10 * YEAR, -301]
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, offsets)
    # grace 300 s: r7 (301 s past) goes, r2 (2 s past) stays
    runner = in_process(job_env(aw_db, grace_seconds=300))
    result = runner.run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["deleted"] == 3
    assert result.details["dry_run"] is False
    assert result.details["complete"] is True
    assert result.summary.startswith("deleted 3 expired rows of public.attributes")
    with aw_db.connect() as conn:
        assert remaining_ids(conn) == {"r2", "r3", "r4", "r5", "r6"}
    labels = {"table": "attributes"}
    assert runner.value("awops_pg_ttl_purged_rows_total", **labels) == 3
    assert runner.value("awops_pg_ttl_expired_rows", **labels) == 0
    assert runner.value("awops_pg_ttl_oldest_expired_age_seconds", **labels) == 0
    assert runner.value("awops_pg_ttl_batch_duration_seconds_count", **labels) >= 1

    again = runner.run(JOB)
    assert again.status == "ok"
    assert again.details["deleted"] == 0
    assert runner.value("awops_pg_ttl_purged_rows_total", **labels) == 3


def test_dry_run_counts_and_deletes_nothing(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-50, -40, -30, None, 600])
    runner = in_process(aw_db.awops_env())
    result = runner.run(JOB, dry_run=True)
    assert result.status == "ok"
    assert result.details["dry_run"] is True
    assert result.details["deleted"] == 0
    assert result.details["would_delete"] == 3
    assert "would delete 3" in result.summary
    # the backlog and its age are visible before anything is deleted
    assert runner.value("awops_pg_ttl_expired_rows", table="attributes") == 3
    assert runner.value("awops_pg_ttl_oldest_expired_age_seconds", table="attributes") >= 50
    with aw_db.connect() as conn:
        assert count(conn) == 5


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    offsets=st.lists(
        st.one_of(
            st.none(),
            st.integers(-3 * YEAR, -2),  # expired, spread out
            st.integers(-40, -2),  # expired, many equal ttls (keyset ties)
            st.integers(120, 3 * YEAR),  # in the future
        ),
        max_size=400,
    ),
    batch_size=st.integers(1, 60),
    walk=st.sampled_from(["index", "heap", "auto"]),
)
def test_property_exactly_expired_rows_go(
    aw_db: PgDatabase,
    in_process,
    offsets: list[int | None],
    batch_size: int,
    walk: str,
):
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("TRUNCATE attributes")
        seed(conn, offsets)
    env = job_env(
        aw_db,
        initial_batch_size=batch_size,
        min_batch_size=1,
        max_batch_size=batch_size,
        walk=walk,
    )
    runner = in_process(env)
    try:
        result = runner.run(JOB)
    finally:
        runner.close()
    assert result.status == "ok", result.summary
    expected = {f"r{i}" for i, o in enumerate(offsets) if o is None or o > 0}
    with aw_db.connect() as conn:
        assert remaining_ids(conn) == expected
    assert result.details["deleted"] == len(offsets) - len(expected)


def test_host_clock_a_year_fast_deletes_nothing_extra(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        # r0 expired by the database's clock; r1..r3 expire within the year the host is ahead
        seed(conn, [-60, 3600, 30 * 86400, YEAR // 2, None])
    runner = in_process(aw_db.awops_env())
    fast = JobRunner(
        runner.config,
        runner.registry,
        runner.metrics,
        runner.resources,
        clock=lambda: time.time() + YEAR,
    )
    result = fast.run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["deleted"] == 1
    # the cutoff reported is the database's, not the host's
    with aw_db.connect() as conn:
        db_now = conn.execute("SELECT extract(epoch FROM now())::bigint").fetchone()
        assert db_now is not None
        assert abs(result.details["cutoff"] - db_now[0]) < 60
        assert remaining_ids(conn) == {"r1", "r2", "r3", "r4"}


@pytest.mark.parametrize("walk", ["index", "heap"])
def test_row_locked_by_the_application_is_skipped_then_purged(
    aw_db: PgDatabase, in_process, walk: str
):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100, -90, -80, -70, None])
    app = aw_db.connect()  # an application transaction revoking r1, not yet committed
    try:
        app.execute("SELECT 1 FROM attributes WHERE id = 'r1' FOR UPDATE")
        runner = in_process(job_env(aw_db, walk=walk, lock_timeout_ms=60_000))
        started = time.monotonic()
        first = runner.run(JOB)
        waited = time.monotonic() - started
        assert first.status == "ok", first.summary
        assert first.details["deleted"] == 3
        assert first.details["held_skipped"] == 1
        assert first.details["lock_timeouts"] == 0
        assert runner.value("awops_pg_ttl_held_rows_skipped_total", table="attributes") == 1
        assert waited < 30  # skipped, not waited for (lock_timeout_ms would allow 60 s)
        with aw_db.connect() as conn:
            assert remaining_ids(conn) == {"r1", "r4"}
    finally:
        app.rollback()
        app.close()
    second = runner.run(JOB)
    assert second.status == "ok"
    assert second.details["deleted"] == 1
    with aw_db.connect() as conn:
        assert remaining_ids(conn) == {"r4"}


@pytest.mark.parametrize("note_chars", [None, 1], ids=["noted", "note-full"])
@pytest.mark.parametrize("walk", ["index", "heap"])
def test_rows_with_a_stale_xmax_go_in_the_same_run(
    aw_db: PgDatabase, in_process, monkeypatch: pytest.MonkeyPatch, walk: str, note_chars: Any
):
    """Rows once locked, or deleted or updated by a transaction that rolled back, keep an xmax:
    the direct delete passes over them and the SKIP LOCKED pass of the same batch takes them,
    by their noted ctids or, when the note is full, by going over the batch again."""
    if note_chars is not None:
        monkeypatch.setattr(walks, "HELD_NOTE_MAX_CHARS", note_chars)
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100, -90, -80, -70, 3600, None])
    with aw_db.connect() as app:
        app.execute("SELECT 1 FROM attributes WHERE id IN ('r0', 'r4') FOR SHARE")
        app.commit()  # a lock that ended: its xid stays in xmax
        app.execute("DELETE FROM attributes WHERE id IN ('r1', 'r5')")
        app.rollback()
        app.execute("UPDATE attributes SET data = data WHERE id = 'r2'")
        app.rollback()
        stale = app.execute(
            "SELECT id FROM attributes WHERE xmax <> '0'::xid ORDER BY id"
        ).fetchall()
        assert [row[0] for row in stale] == ["r0", "r1", "r2", "r4", "r5"]
    result = in_process(job_env(aw_db, walk=walk)).run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["deleted"] == 4
    assert result.details["held_checked"] == 3  # r0, r1, r2: expired, with a stale xmax
    assert result.details["held_skipped"] == 0
    with aw_db.connect() as conn:
        assert remaining_ids(conn) == {"r4", "r5"}


@pytest.mark.parametrize("walk", ["index", "heap"])
def test_row_the_application_is_making_live_is_never_deleted(
    aw_db: PgDatabase, in_process, walk: str
):
    """An application transaction extending an expired token's ttl: the purge skips the row
    while the transaction runs and, once it commits, the row is live and stays."""
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100, -90, None])
    runner = in_process(job_env(aw_db, walk=walk))
    with aw_db.connect() as app:
        app.execute(
            "UPDATE attributes SET ttl_timestamp = floor(extract(epoch FROM now()))::bigint"
            " + 3600 WHERE id = 'r1'"
        )
        # a second holder of r0 as well: a multixact in xmax
        with aw_db.connect() as other:
            app.execute("SELECT 1 FROM attributes WHERE id = 'r0' FOR KEY SHARE")
            other.execute("SELECT 1 FROM attributes WHERE id = 'r0' FOR KEY SHARE")
            during = runner.run(JOB)
            assert during.status == "ok", during.summary
            assert during.details["deleted"] == 0
            assert during.details["held_skipped"] == 2
            other.rollback()
        app.commit()
    after = runner.run(JOB)
    assert after.status == "ok", after.summary
    assert after.details["deleted"] == 1
    with aw_db.connect() as conn:
        assert remaining_ids(conn) == {"r1", "r2"}


def test_batches_cut_off_by_statement_timeout_are_retried_smaller(
    aw_db: PgDatabase, in_process, caplog: pytest.LogCaptureFixture
):
    """A cancelled batch leaves its xid in the xmax of the rows it had deleted; the retry
    knows that xid as its own and deletes those rows like any other."""
    with aw_db.connect(autocommit=True) as conn:
        seed_many(conn, expired=20_000, live=2_000)
    runner = in_process(job_env(aw_db, walk="heap", statement_timeout_ms=1))
    with caplog.at_level("WARNING", logger="awops.purge"):
        result = runner.run(JOB)
    assert result.status == "ok", result.summary
    assert "hit statement_timeout" in caplog.text
    assert result.details["statement_timeouts"] > 0
    assert result.details["deleted"] == 20_000
    assert result.details["held_checked"] == 0  # none needed the SKIP LOCKED pass
    with aw_db.connect() as conn:
        assert count(conn) == 2_000


def test_a_smallest_batch_that_never_fits_statement_timeout_stops_the_run(
    aw_db: PgDatabase, in_process
):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100, -90, None])
        # every deleted row costs 50 ms: no batch finishes within 16 x 1 ms
        conn.execute(
            """CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(0.05); RETURN OLD; END $$"""
        )
        conn.execute(
            "CREATE TRIGGER slow BEFORE DELETE ON attributes FOR EACH ROW "
            "EXECUTE FUNCTION slow_delete()"
        )
    runner = in_process(job_env(aw_db, walk="heap", statement_timeout_ms=1))
    result = runner.run(JOB)
    assert result.status == "error"
    assert "ran past statement_timeout even at 16 ms" in result.summary
    assert result.details["deleted"] == 0
    with aw_db.connect() as conn:
        assert count(conn) == 3


def test_table_locked_by_another_session_stops_the_run_with_nothing_lost(
    aw_db: PgDatabase, in_process
):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100, -90, None])
    runner = in_process(job_env(aw_db, lock_timeout_ms=50))
    with aw_db.connect() as locker:
        locker.execute("LOCK TABLE attributes IN SHARE MODE")  # as CREATE INDEX takes it
        result = runner.run(JOB)
    assert result.status == "error"
    assert "locked by another session beyond lock_timeout_ms 50" in result.summary
    assert result.details["deleted"] == 0
    assert runner.value("awops_pg_ttl_lock_timeouts_total", table="attributes") == 3
    with aw_db.connect() as conn:
        assert count(conn) == 3
    assert runner.run(JOB).details["deleted"] == 2


def test_schema_prefix_is_honoured(pg_db: PgDatabase, in_process):
    with pg_db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)  # a decoy in public that must stay untouched
        create_actingweb_schema(conn, schema="acme_actingweb")
        seed(conn, [-100, -50, None, 900])
        seed(conn, [-100, -50, -10, None, 900], schema="acme_actingweb")
    env = pg_db.awops_env(PG_DB_PREFIX="acme_", PG_DB_SCHEMA="actingweb")
    result = in_process(env).run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["deleted"] == 3
    assert result.details["table"] == "acme_actingweb.attributes"
    with pg_db.connect() as conn:
        assert remaining_ids(conn, "acme_actingweb") == {"r3", "r4"}
        assert remaining_ids(conn) == {"r0", "r1", "r2", "r3"}


def test_bucket_filter(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100, -100, -100, None])
        conn.execute("UPDATE attributes SET bucket = 'mcp_tokens' WHERE id = 'r1'")
    result = in_process(job_env(aw_db, buckets="mcp_tokens,spa_tokens")).run(JOB)
    assert result.details["deleted"] == 1
    with aw_db.connect() as conn:
        assert remaining_ids(conn) == {"r0", "r2", "r3"}


@pytest.mark.parametrize(
    ("setup", "options", "message"),
    [
        ("DROP TABLE attributes", {}, "table public.attributes does not exist"),
        ("", {"column": "expires_at"}, "column 'expires_at' does not exist in public.attributes"),
        (
            "",
            {"column": "name"},
            "public.attributes.name is character varying, expected an integer",
        ),
        ("DROP INDEX idx_attributes_ttl", {}, "no btree index on public.attributes(ttl_timestamp)"),
    ],
    ids=["missing-table", "missing-column", "wrong-type", "no-index"],
)
def test_refuses_unsafe_targets_with_exit_1(
    aw_db: PgDatabase, setup: str, options: dict[str, str], message: str
):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100, -50, None])
        conn.execute("CREATE TABLE keep AS SELECT * FROM attributes")
        if setup:
            conn.execute(setup)
    result = run_awops("run-once", JOB, "--json", env=job_env(aw_db, **options))
    assert result.returncode == 1, result.stderr
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "error"
    assert message in job["summary"]
    assert "nothing deleted" in job["summary"]
    assert job["details"]["deleted"] == 0
    assert "Traceback" not in result.stderr
    with aw_db.connect() as conn:
        if "attributes" in remaining_tables(conn):
            assert count(conn) == 3


def remaining_tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {row[0] for row in conn.execute("SELECT tablename FROM pg_tables")}


def test_no_index_with_allow_seq_scan_walks_the_heap(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("DROP INDEX idx_attributes_ttl")
        seed(conn, [-100, -50, None, 100])
    result = in_process(job_env(aw_db, allow_seq_scan="true")).run(JOB)
    assert result.status == "ok", result.summary
    assert result.details["walk"] == "heap"
    assert result.details["deleted"] == 2


def test_max_rows_per_run_leaves_the_rest_for_the_next_run(aw_db: PgDatabase, in_process):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100 - i for i in range(30)] + [None])
    runner = in_process(
        job_env(aw_db, max_rows_per_run=12, initial_batch_size=5, min_batch_size=1, walk="index")
    )
    first = runner.run(JOB)
    assert first.status == "ok"
    assert first.details["deleted"] == 12
    assert first.details["complete"] is False
    assert "max_rows_per_run 12" in first.summary
    assert runner.value("awops_pg_ttl_expired_rows", table="attributes") == 18
    # the oldest go first: the keyset walks the index from the oldest ttl
    with aw_db.connect() as conn:
        assert remaining_ids(conn) == {f"r{i}" for i in range(18)} | {"r30"}
    assert runner.run(JOB).details["deleted"] == 12
    assert runner.run(JOB).details["deleted"] == 6


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 200_000),
    elapsed=st.floats(0.0, 5.0, allow_nan=False),
    target=st.floats(0.005, 1.0, allow_nan=False),
)
def test_batch_size_steers_toward_target_within_bounds(
    size: int, elapsed: float, target: float
) -> None:
    low, high = 1, 100_000
    size = min(size, high)
    following = next_batch_size(size, elapsed, target, low, high)
    assert low <= following <= high
    # At most halves at once; grows at most 2x, and at most 1.5x once a batch took a
    # quarter of the target or more (so a lucky batch cannot push the next past it).
    assert following >= min(size // 2, high)
    cap = 2.0 if elapsed < target / 4 else 1.5
    assert following <= max(size * cap, size + 1)
    if elapsed > target:
        assert following <= size
    if elapsed < target / 2 and size < high:
        assert following > size


def _plan(conn: psycopg.Connection[Any], statement: Any, params: dict[str, Any]) -> str:
    rows = conn.execute(psycopg.sql.SQL("EXPLAIN {}").format(statement), params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_batches_keep_their_range_plans_and_skip_the_commit_flush(aw_db: PgDatabase):
    with aw_db.connect(autocommit=True) as conn:
        seed(conn, [-100 - i for i in range(2000)] + [None] * 2000)
        conn.execute("ANALYZE attributes")
        database = psycopg.sql.Identifier(aw_db.name)
        for setting in (
            "enable_tidscan = off",
            "enable_indexscan = off",
            "synchronous_commit = on",
        ):
            conn.execute(psycopg.sql.SQL("ALTER DATABASE {} SET " + setting).format(database))
    options = pg_ttl_purge.PgTtlPurgeOptions()
    table = PurgeTable(
        "public", "attributes", "ttl_timestamp", "idx_attributes_ttl", 100, 4000, True
    )
    expiry = Expiry(cutoff=2**40, now=2**40)
    heap = walks.HeapWalk(table, expiry, workers=2)
    index = walks.IndexWalk(table, expiry, options, oldest=0)
    params = expiry.params(start=0, after_ctid="(0,0)", limit=16, ours=[])
    with aw_db.connect() as conn:
        # Without the batch's settings the server scans every expired row for each range.
        assert "Tid Range Scan" not in _plan(conn, heap.delete_statement(), params)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        conn.execute(batch_settings(options.lock_timeout_ms, 150))
        # A batch's commit does not wait for the WAL flush (a lost one is redone next run).
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        assert "Tid Range Scan" in _plan(conn, heap.delete_statement(), params)
        index_plan = _plan(conn, index.delete_statement(), params)
        assert "idx_attributes_ttl" in index_plan and "Tid Scan" in index_plan
        assert "Seq Scan" not in index_plan
        conn.rollback()
        # All of it for the batch's transaction only: the session is as the server set it.
        assert "Tid Range Scan" not in _plan(conn, heap.delete_statement(), params)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        conn.rollback()

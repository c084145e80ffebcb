"""What ``vacuum_after = "auto"`` costs and saves against leaving the purge to autovacuum.

The table is bench.purge's: ActingWeb's ``attributes`` with N rows, half expired, TTLs
uncorrelated with the heap order; each trial runs both arms on fresh identical copies, with
autovacuum on and at its defaults in both:

  (v) ``awops run-once pg-ttl-purge`` with ``vacuum_after = "auto"``: the purge, then its
      ``VACUUM (ANALYZE)``;
  (a) the same purge with ``vacuum_after = "off"``, then autovacuum, whenever it comes.

Right after each run: the dead rows (``n_dead_tup``), the planner's row estimate
(``pg_class.reltuples``) against ``count(*)``, and the heap's size. Then the application goes
on writing: ``--insert-rows`` new tokens, and how much the heap grew for them (free space a
vacuum made is reused; before one, new rows go to new pages). Then, for (a), how long until
autovacuum had processed the table, counted from the purge's end, and how long its own run
took (it is throttled by ``autovacuum_vacuum_cost_delay``, ours is not).

    flock /tmp/awops-bench.lock .venv/bin/python -m bench.reclaim [--rows 2000000]
        [--trials 2] [--insert-rows 200000] [--no-fsync]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.purge import (
    DURABLE_SETTINGS,
    SERVER_SETTINGS,
    awops_purge,
    build_template,
    drop,
    fresh_copy,
)
from tests.fix_pg import PgCluster, PgDatabase

AUTOVACUUM_WAIT_SECONDS = 600.0

INSERT = """
INSERT INTO attributes (id, bucket_name, bucket, name, data, timestamp, ttl_timestamp)
SELECT 'new-' || g, 'oauth_tokens:new-' || g, 'oauth_tokens', md5(g::text),
       jsonb_build_object('chain_id', 'new-chain-' || g / 10, 'scope', 'mcp',
                          'token_hash', md5('n' || g)),
       now(), floor(extract(epoch FROM now()))::bigint + 3600
FROM generate_series(1, %s) AS g
"""


def table_state(db: PgDatabase) -> dict[str, float]:
    """Dead rows, the planner's estimate against the truth, the heap's size."""
    with db.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            """SELECT s.n_dead_tup, s.n_live_tup, c.reltuples, pg_relation_size(c.oid),
                      (SELECT count(*) FROM attributes)
               FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
               WHERE s.relname = 'attributes'"""
        ).fetchone()
    assert row is not None
    dead, live, reltuples, heap_bytes, rows = row
    return {
        "dead": float(dead),
        "live_by_stats": float(live),
        "reltuples": float(reltuples),
        "rows": float(rows),
        "estimate_error": (float(reltuples) - rows) / rows if rows else 0.0,
        "heap_mb": heap_bytes / 2**20,
    }


def insert_growth(db: PgDatabase, rows: int) -> float:
    """MiB the heap grew by for ``rows`` new tokens."""
    with db.connect(autocommit=True) as conn:
        before = conn.execute("SELECT pg_relation_size('attributes')").fetchone()
        conn.execute(INSERT, (rows,))
        after = conn.execute("SELECT pg_relation_size('attributes')").fetchone()
    assert before is not None and after is not None
    return float(after[0] - before[0]) / 2**20


def wait_for_autovacuum(db: PgDatabase, since: float) -> dict[str, float]:
    """Seconds from ``since`` (the purge's end) until autovacuum started on the table and
    until it had finished, by polling its progress view and its counter."""
    started = finished = float("nan")
    with db.connect(autocommit=True) as conn:
        while time.monotonic() - since < AUTOVACUUM_WAIT_SECONDS:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            running = conn.execute(
                """SELECT 1 FROM pg_stat_progress_vacuum p JOIN pg_class c ON c.oid = p.relid
                   WHERE c.relname = 'attributes' AND p.datname = current_database()"""
            ).fetchone()
            if running and started != started:  # still NaN
                started = time.monotonic() - since
            row = conn.execute(
                "SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'attributes'"
            ).fetchone()
            if row and row[0] > 0:
                finished = time.monotonic() - since
                break
            time.sleep(0.25)
    return {"autovacuum_started": started, "autovacuum_finished": finished}


def arm(cluster: PgCluster, name: str, vacuum: bool, insert_rows: int) -> dict[str, Any]:
    db = fresh_copy(cluster, name)
    with db.connect(autocommit=True) as conn:
        # The copy starts without statistics; a table in service has them.
        conn.execute("ANALYZE attributes")
    settings = {"AWOPS_JOB_PG_TTL_PURGE_VACUUM_AFTER": "auto" if vacuum else "off"}
    deleted, wall, job_seconds, details = awops_purge(db, settings)
    purge_end = time.monotonic()
    time.sleep(1.0)  # the purge's sessions report their deletions to the statistics on exit
    figures: dict[str, Any] = {
        "deleted": deleted,
        "wall": wall,
        "job": job_seconds,
        "vacuum_seconds": details.get("vacuum_seconds") or 0.0,
        "ratio_before": details.get("dead_rows_ratio_before"),
        "ratio_after": details.get("dead_rows_ratio_after"),
        **table_state(db),
        "growth_mb": insert_growth(db, insert_rows),
    }
    if not vacuum:
        figures.update(wait_for_autovacuum(db, purge_end))
        figures["autovacuum_seconds"] = (
            figures["autovacuum_finished"] - figures["autovacuum_started"]
        )
        after = table_state(db)
        figures["dead_after_autovacuum"] = after["dead"]
        figures["estimate_error_after_autovacuum"] = after["estimate_error"]
    drop(cluster, db)
    return figures


def describe(label: str, f: dict[str, Any]) -> str:
    text = (
        f"{label}: deleted {f['deleted']} in {f['job']:.2f} s (job; {f['wall']:.2f} s process), "
        f"VACUUM {f['vacuum_seconds']:.2f} s; then dead rows {f['dead']:,.0f}, reltuples "
        f"{f['reltuples']:,.0f} for {f['rows']:,.0f} rows ({f['estimate_error']:+.1%}), heap "
        f"{f['heap_mb']:.0f} MiB, grew {f['growth_mb']:.1f} MiB for the new rows; "
        f"dead share reported {f['ratio_before']} -> {f['ratio_after']}"
    )
    if "autovacuum_finished" in f:
        text += (
            f"; autovacuum started {f['autovacuum_started']:.1f} s and finished "
            f"{f['autovacuum_finished']:.1f} s after the purge ({f['autovacuum_seconds']:.1f} s "
            f"run), leaving {f['dead_after_autovacuum']:,.0f} dead rows and an estimate "
            f"{f['estimate_error_after_autovacuum']:+.1%} off"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--insert-rows", type=int, default=200_000)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    settings = SERVER_SETTINGS if args.no_fsync else {**SERVER_SETTINGS, **DURABLE_SETTINGS}
    cluster = PgCluster(extra_settings=settings).init().start()
    results: dict[str, list[dict[str, Any]]] = {"v": [], "a": []}
    try:
        with cluster.connect() as conn:
            version = conn.execute("SHOW server_version").fetchone()
            autovacuum = conn.execute(
                """SELECT string_agg(name || '=' || setting, ', ' ORDER BY name)
                   FROM pg_settings WHERE name IN ('autovacuum', 'autovacuum_naptime',
                     'autovacuum_vacuum_scale_factor', 'autovacuum_vacuum_threshold',
                     'autovacuum_vacuum_cost_delay', 'autovacuum_vacuum_cost_limit')"""
            ).fetchone()
        print(f"PostgreSQL {version[0] if version else '?'}, settings {settings}")
        print(f"autovacuum (defaults): {autovacuum[0] if autovacuum else '?'}", flush=True)
        build_template(cluster, args.rows)
        for trial in range(1, args.trials + 1):
            for key, vacuum in (("v", True), ("a", False)):
                figures = arm(cluster, f"reclaim_{key}", vacuum, args.insert_rows)
                results[key].append(figures)
                print(f"trial {trial} {describe(key, figures)}", flush=True)
    finally:
        cluster.destroy()

    def median(key: str, name: str) -> float:
        return statistics.median(float(t[name]) for t in results[key])

    print(f"\nmedians of {args.trials} trials, {args.rows} rows (half expired):")
    for key, label in (("v", "(v) purge + VACUUM (ANALYZE)"), ("a", "(a) purge, autovacuum")):
        print(
            f"  {label:<30} job {median(key, 'job'):6.2f} s (VACUUM "
            f"{median(key, 'vacuum_seconds'):5.2f} s); dead rows {median(key, 'dead'):>10,.0f}; "
            f"estimate {median(key, 'estimate_error'):+7.1%}; heap growth for "
            f"{args.insert_rows} new rows {median(key, 'growth_mb'):6.1f} MiB"
        )
    print(
        f"  (a) autovacuum started {median('a', 'autovacuum_started'):.1f} s, finished "
        f"{median('a', 'autovacuum_finished'):.1f} s after the purge "
        f"(its own run {median('a', 'autovacuum_seconds'):.1f} s)"
    )


if __name__ == "__main__":
    main()

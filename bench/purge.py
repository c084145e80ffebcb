"""``awops run-once pg-ttl-purge`` against ActingWeb's single DELETE, with revocations running.

Builds ActingWeb's ``attributes`` table (both of its indexes) holding N rows: half expired, a
quarter with NULL ttl, a quarter in the future; tokens spread over 20,000 actors, chains of
about ten tokens (``data->>'chain_id'``). TTLs are uncorrelated with the heap order, the worst
case for an index walk. Every trial runs on fresh identical copies of that table:

  (a) ActingWeb's purge: ``DELETE FROM attributes WHERE ttl_timestamp IS NOT NULL AND
      ttl_timestamp < <now>``, timed as the statement alone;
  (b) ``awops run-once pg-ttl-purge --json`` as a fresh process, timed from exec to exit
      (and by the job's own ``duration_seconds``, which leaves out interpreter start-up).

While each runs, a second connection revokes random chains as ActingWeb does
(``DELETE FROM attributes WHERE data->>'chain_id' = %s``, one every ``--revoke-pause-ms``)
and records their latency. Prints rows/s of (a) and (b) and the ratio, awops' longest
transaction (measured by the job around each batch, and sampled from pg_stat_activity), and
the revocation latency p50/p99/max under each; each trial, then the medians.

The server runs with a production server's durability (fsync, synchronous_commit and
full_page_writes on); ``--no-fsync`` runs it as the tests do, with all three off.

Targets: ratio >= 1.0, longest transaction <= 200 ms, revocation max under (b) <= 1/4 of (a).

    flock /tmp/awops-bench.lock .venv/bin/python -m bench.purge [--rows 2000000] [--trials 3]
        [--no-fsync]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fix_awops import clean_environ
from tests.fix_pg import PgCluster, PgDatabase
from tests.fix_schema import create_actingweb_schema

ACTORS = 20_000
TOKENS_PER_CHAIN = 10
SERVER_SETTINGS = {"shared_buffers": "1GB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"}
# A production server's durability; the test clusters turn all three off.
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

POPULATE = """
INSERT INTO attributes (id, bucket_name, bucket, name, data, timestamp, ttl_timestamp)
SELECT 'actor-' || lpad((g %% %(actors)s)::text, 6, '0'),
       'oauth_tokens:' || md5(g::text),
       'oauth_tokens',
       md5(g::text),
       jsonb_build_object('chain_id', 'chain-' || ((g::bigint * 7919) %% %(chains)s),
                          'client_id', 'client-' || (g %% 97), 'scope', 'mcp')
           || CASE WHEN g %% 4 = 0 THEN '{}'::jsonb
                   ELSE jsonb_build_object('token_hash', md5('t' || g)) END,
       now(),
       CASE WHEN r < 0.50 THEN %(now)s - 1 - floor(random() * 30 * 86400)::bigint
            WHEN r < 0.75 THEN NULL
            ELSE %(now)s + 3600 + floor(random() * 30 * 86400)::bigint END
FROM generate_series(1, %(rows)s) AS g, LATERAL (SELECT random() + 0 * g AS r) AS dice
"""


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        values = sorted(self.seconds) or [0.0]
        return {
            "count": len(self.seconds),
            "p50": values[len(values) // 2],
            "p99": values[min(len(values) - 1, int(len(values) * 0.99))],
            "max": values[-1],
        }


class Revoker(threading.Thread):
    """ActingWeb revoking token chains, one at a time, on its own connection."""

    def __init__(self, db: PgDatabase, chains: int, pause_seconds: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.db, self.chains, self.pause = db, chains, pause_seconds
        self.random = random.Random(seed)
        self.latencies = Latencies()
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with self.db.connect(autocommit=True) as conn:
            conn.execute("SET application_name = 'actingweb-revoke'")
            self.ready.set()
            while not self.stop.is_set():
                chain = f"chain-{self.random.randrange(self.chains)}"
                started = time.perf_counter()
                conn.execute("DELETE FROM attributes WHERE data->>'chain_id' = %s", (chain,))
                self.latencies.seconds.append(time.perf_counter() - started)
                self.stop.wait(self.pause)


class TransactionSampler(threading.Thread):
    """The longest transaction of awops' sessions as pg_stat_activity shows it (a lower bound)."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.longest = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        with self.db.connect(autocommit=True) as conn:
            conn.execute("SET application_name = 'bench-sampler'")
            while not self.stop.is_set():
                row = conn.execute(
                    """SELECT extract(epoch FROM max(clock_timestamp() - xact_start))
                       FROM pg_stat_activity
                       WHERE application_name = 'awops' AND datname = current_database()"""
                ).fetchone()
                if row and row[0] is not None:
                    self.longest = max(self.longest, float(row[0]))
                # Every 50 ms: often enough to see a 100 ms batch, rarely enough that the
                # sampler's own queries do not take CPU from the purge it is timing.
                self.stop.wait(0.05)


def build_template(cluster: PgCluster, rows: int) -> PgDatabase:
    template = cluster.create_database("purge_template")
    with template.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
        started = time.perf_counter()
        now = conn.execute("SELECT floor(extract(epoch FROM now()))::bigint").fetchone()
        assert now is not None
        conn.execute(
            POPULATE,
            {
                "actors": ACTORS,
                "chains": max(rows // TOKENS_PER_CHAIN, 1),
                "rows": rows,
                "now": now[0],
            },
        )
        conn.execute("VACUUM (ANALYZE) attributes")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        size = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('attributes'))"
        ).fetchone()
        print(
            f"built {rows} rows ({size[0] if size else '?'} with indexes) "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return template


def fresh_copy(cluster: PgCluster, name: str) -> PgDatabase:
    with cluster.connect(autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE purge_template STRATEGY FILE_COPY')
    db = PgDatabase(cluster, name)
    with db.connect(autocommit=True) as conn:
        for relation in ("attributes", "attributes_pkey", "idx_attributes_ttl"):
            conn.execute("SELECT pg_prewarm(%s)", (relation,))
        conn.execute("SELECT pg_prewarm('idx_attributes_chain_id')")
        conn.execute("CHECKPOINT")
    return db


def drop(cluster: PgCluster, db: PgDatabase) -> None:
    with cluster.connect(autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}"')


def single_delete(db: PgDatabase) -> tuple[int, float]:
    with db.connect(autocommit=True) as conn:
        conn.execute("SET application_name = 'actingweb-purge'")
        started = time.perf_counter()
        cursor = conn.execute(
            "DELETE FROM attributes WHERE ttl_timestamp IS NOT NULL "
            "AND ttl_timestamp < floor(extract(epoch FROM now()))::bigint"
        )
        return cursor.rowcount, time.perf_counter() - started


def awops_purge(
    db: PgDatabase, settings: dict[str, str] | None = None
) -> tuple[int, float, float, dict[str, Any]]:
    env = clean_environ(db.awops_env(AWOPS_LOG_FORMAT="json", **(settings or {})))
    # Measure what a deployed host pays: byte-code caches written and used.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-m", "awops", "run-once", "pg-ttl-purge", "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"awops failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    (job,) = json.loads(done.stdout)["jobs"]
    details = job["details"]
    return int(details["deleted"]), elapsed, float(job["duration_seconds"]), details


def under_revocations(db: PgDatabase, rows: int, pause: float, seed: int, work: Any) -> Any:
    revoker = Revoker(db, max(rows // TOKENS_PER_CHAIN, 1), pause, seed)
    sampler = TransactionSampler(db)
    revoker.start()
    sampler.start()
    revoker.ready.wait(10)
    time.sleep(0.5)  # revocations at steady state before the purge starts
    try:
        result = work()
    finally:
        time.sleep(0.2)
        revoker.stop.set()
        sampler.stop.set()
        revoker.join(60)
        sampler.join(10)
    return result, revoker.latencies.summary(), sampler.longest


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--revoke-pause-ms", type=float, default=10.0)
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="run the server as the tests do (fsync, synchronous_commit, full_page_writes off)",
    )
    args = parser.parse_args()
    settings = SERVER_SETTINGS if args.no_fsync else {**SERVER_SETTINGS, **DURABLE_SETTINGS}
    cluster = PgCluster(extra_settings=settings).init().start()
    trials: list[dict[str, Any]] = []
    try:
        with cluster.connect() as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(f"PostgreSQL {version[0] if version else '?'}, settings {settings}")
        build_template(cluster, args.rows)
        pause = args.revoke_pause_ms / 1000
        for trial in range(1, args.trials + 1):
            db = fresh_copy(cluster, "purge_single")
            (a_rows, a_seconds), a_revoke, _ = under_revocations(
                db, args.rows, pause, trial, lambda db=db: single_delete(db)
            )
            drop(cluster, db)
            db = fresh_copy(cluster, "purge_awops")
            (b_rows, b_seconds, b_job_seconds, details), b_revoke, sampled = under_revocations(
                db, args.rows, pause, trial, lambda db=db: awops_purge(db)
            )
            drop(cluster, db)
            figures = {
                "a_rate": a_rows / a_seconds,
                "b_rate": b_rows / b_seconds,
                "b_job_rate": b_rows / b_job_seconds,
                "longest": float(details["longest_batch_seconds"]),
                "sampled_longest": sampled,
                "batches": details["batches"],
                "lock_timeouts": details.get("lock_timeouts", 0),
                "statement_timeouts": details.get("statement_timeouts", 0),
                "held_skipped": details.get("held_skipped", 0),
                "a_revoke": a_revoke,
                "b_revoke": b_revoke,
            }
            figures["ratio"] = figures["b_rate"] / figures["a_rate"]
            figures["job_ratio"] = figures["b_job_rate"] / figures["a_rate"]
            figures["revoke_max_ratio"] = b_revoke["max"] / max(a_revoke["max"], 1e-9)
            trials.append(figures)
            print(
                f"trial {trial}: (a) {a_rows} rows in {a_seconds:.2f} s = "
                f"{figures['a_rate']:,.0f} rows/s; (b) {b_rows} rows in {b_seconds:.2f} s "
                f"(job {b_job_seconds:.2f} s, {details['batches']} batches, "
                f"{figures['held_skipped']} held rows skipped, {figures['lock_timeouts']} redone "
                f"after lock_timeout, {figures['statement_timeouts']} after statement_timeout) = "
                f"{figures['b_rate']:,.0f} rows/s; ratio {figures['ratio']:.2f}x (job alone "
                f"{figures['job_ratio']:.2f}x); longest awops "
                f"transaction {ms(figures['longest'])} (sampled {ms(sampled)}); revocations "
                f"(a) n={a_revoke['count']} p50 {ms(a_revoke['p50'])} p99 {ms(a_revoke['p99'])} "
                f"max {ms(a_revoke['max'])}, (b) n={b_revoke['count']} "
                f"p50 {ms(b_revoke['p50'])} p99 {ms(b_revoke['p99'])} max {ms(b_revoke['max'])}",
                flush=True,
            )
    finally:
        cluster.destroy()

    def median(key: str, sub: str | None = None) -> float:
        return statistics.median(t[key][sub] if sub else t[key] for t in trials)

    print(f"\nmedians of {len(trials)} trials, {args.rows} rows (half expired):")
    print(f"  (a) single DELETE:              {median('a_rate'):>12,.0f} rows/s")
    print(
        f"  (b) awops run-once pg-ttl-purge: {median('b_rate'):>11,.0f} rows/s "
        f"(job alone {median('b_job_rate'):,.0f} rows/s)"
    )
    print(
        f"  ratio (b)/(a):                  {median('ratio'):.2f}x with process start-up, "
        f"{median('job_ratio'):.2f}x job alone   (target >= 1.0)"
    )
    print(
        f"  longest awops transaction:      {ms(median('longest'))} "
        f"(sampled {ms(median('sampled_longest'))}; target <= 200 ms)"
    )
    for label, key in (("(a) single DELETE", "a_revoke"), ("(b) awops", "b_revoke")):
        print(
            f"  revocation under {label:<18} p50 {ms(median(key, 'p50')):>10}  "
            f"p99 {ms(median(key, 'p99')):>10}  max {ms(median(key, 'max')):>10}"
        )
    print(f"  revocation max (b)/(a):         {median('revoke_max_ratio'):.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()

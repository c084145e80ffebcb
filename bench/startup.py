"""Start-up cost of ``awops run-once pg-health`` against a minimal psycopg script.

Both run the same query against the same throwaway cluster, interleaved, as fresh processes (as
a CronJob or cron pays them). Prints each median and the ratio; the target is at most 1.3x.

    python -m bench.startup [--runs 9]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from tests.fix_awops import clean_environ
from tests.fix_pg import PgCluster
from tests.fix_schema import create_actingweb_schema

BASELINE = """
import os, psycopg
conn = psycopg.connect(host=os.environ["PG_DB_HOST"], port=os.environ["PG_DB_PORT"],
                       dbname=os.environ["PG_DB_NAME"], user=os.environ["PG_DB_USER"],
                       password=os.environ["PG_DB_PASSWORD"])
conn.execute("SELECT 1").fetchone()
conn.close()
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    cluster = PgCluster().init().start()
    try:
        db = cluster.create_database()
        with db.connect(autocommit=True) as conn:
            create_actingweb_schema(conn)
        env = clean_environ(db.awops_env(PG_POOL_MIN_SIZE="1"))
        # Measure what cron pays on a deployed host: byte-code caches written and used.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        awops_cmd = [shutil.which("awops") or "awops", "run-once", "pg-health"]
        if not shutil.which("awops"):
            awops_cmd = [sys.executable, "-m", "awops", "run-once", "pg-health"]
        baseline_cmd = [sys.executable, "-c", BASELINE]
        timed(awops_cmd, env), timed(baseline_cmd, env)  # warm the page cache
        awops_times, baseline_times = [], []
        for _ in range(args.runs):
            awops_times.append(timed(awops_cmd, env))
            baseline_times.append(timed(baseline_cmd, env))
        awops_median = statistics.median(awops_times)
        baseline_median = statistics.median(baseline_times)
        print(f"runs each (interleaved):        {args.runs}")
        print(f"minimal psycopg script median:  {baseline_median * 1000:.1f} ms")
        print(f"awops run-once pg-health median: {awops_median * 1000:.1f} ms")
        print(
            f"ratio awops / baseline:         {awops_median / baseline_median:.2f}x"
            " (target <= 1.3x)"
        )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()

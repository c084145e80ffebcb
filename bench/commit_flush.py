"""What a purge batch's commit pays for waiting on the WAL flush, on a durable server.

Runs 30 purge-sized batches (DELETEs of 20,000 rows, each its own transaction) on a freshly
filled table, once with ``synchronous_commit = on`` (the baseline: what a batch paid before)
and once with it off (what pg-ttl-purge's batches set), alternating which goes first. The
server has a production server's durability (fsync, synchronous_commit, full_page_writes on).
Prints each median and the ratio.

    flock /tmp/awops-bench.lock .venv/bin/python -m bench.commit_flush [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.purge import DURABLE_SETTINGS
from tests.fix_pg import PgCluster, PgDatabase

BATCHES = 30
ROWS_PER_BATCH = 20_000


def batches(db: PgDatabase, synchronous_commit: str) -> float:
    with db.connect(autocommit=True) as conn:
        conn.execute("TRUNCATE purged")
        conn.execute(
            "INSERT INTO purged SELECT i, repeat('x', 200) FROM generate_series(1, %s) i",
            (BATCHES * ROWS_PER_BATCH,),
        )
        # Every page's first change after a checkpoint writes the whole page to the WAL, as
        # after any checkpoint on a live server.
        conn.execute("CHECKPOINT")
        conn.autocommit = False
        started = time.perf_counter()
        for batch in range(BATCHES):
            conn.execute("SELECT set_config('synchronous_commit', %s, true)", (synchronous_commit,))
            conn.execute(
                "DELETE FROM purged WHERE id > %s AND id <= %s",
                (batch * ROWS_PER_BATCH, (batch + 1) * ROWS_PER_BATCH),
            )
            conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    settings = {**DURABLE_SETTINGS, "shared_buffers": "512MB", "max_wal_size": "4GB"}
    cluster = PgCluster(extra_settings=settings).init().start()
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    try:
        db = cluster.create_database("commit_flush")
        with db.connect(autocommit=True) as conn:
            conn.execute("CREATE TABLE purged (id integer, pad text)")
        for round_ in range(args.rounds):
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for mode in order:
                seconds[mode].append(batches(db, mode))
            print(
                f"round {round_ + 1}: on {seconds['on'][-1]:.3f} s, off {seconds['off'][-1]:.3f} s",
                flush=True,
            )
    finally:
        cluster.destroy()
    on, off = statistics.median(seconds["on"]), statistics.median(seconds["off"])
    print(f"\n{BATCHES} batches of {ROWS_PER_BATCH} rows, medians of {args.rounds} rounds:")
    print(f"  synchronous_commit = on (baseline): {on:.3f} s")
    print(f"  synchronous_commit = off (awops):   {off:.3f} s")
    print(
        f"  ratio on/off: {on / off:.2f}x (above 1: off is faster), "
        f"{(on - off) / BATCHES * 1000:.1f} ms saved per commit"
    )


if __name__ == "__main__":
    main()

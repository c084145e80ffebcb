"""``awops restore postgresql latest`` against plain ``pg_restore -j N`` of the same file.

Builds the ActingWeb-shaped database of ``bench.backup`` (about ``--size-mb``), backs it up
with ``awops run-once pg-backup`` to a local directory and, age-encrypted, to S3 (moto on
loopback), then runs interleaved, ``--runs`` times each:

- ``createdb`` + ``pg_restore -j N --no-owner --no-privileges --exit-on-error`` of the local
  dump (the baseline);
- ``awops restore postgresql latest`` from the local target (sha256 check, CREATE DATABASE,
  pg_restore -j N, row counts of every table);
- the same from S3 with age encryption (fetch, decrypt and hash as one stream, then restore);
- ``bench.restore_floor`` with and without its row counts: the least a Python program doing
  what #15 asks pays over plain pg_restore (psycopg, sha256, CREATE DATABASE, counts), so
  that awops' own share of the gap shows.

A CHECKPOINT before each run writes out what the previous one left, and the order turns
each round.

It prints the medians, the ratios to the baseline (targets: local at most 1.05, S3 + age at
most 1.15) and awops' own peak RSS (target at most 100 MiB; pg_restore is a child and not
counted). On a shared machine whole rounds run slow together, so it also prints the median of
each round's own ratio (paired). Run it alone on the machine:

    flock /tmp/awops-bench.lock python -m bench.restore [--size-mb 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.backup import (
    MIB,
    actingweb_database,
    awops,
    client_env,
    job_details,
    s3_target,
    timed,
)
from tests.fix_awops import clean_environ
from tests.fix_pg import PgCluster


def drop(cluster: PgCluster, name: str) -> None:
    with cluster.connect(autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def paired(times: list[float], base_times: list[float]) -> float:
    """The median of each round's ratio: a round the machine ran slow for all is one ratio."""
    return statistics.median(t / b for t, b in zip(times, base_times, strict=True))


def age_key(work: Path) -> tuple[Path, str]:
    key = work / "key.txt"
    made = subprocess.run(["age-keygen", "-o", str(key)], capture_output=True, text=True)
    return key, made.stderr.split("Public key: ")[1].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=float, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    jobs = min(4, os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="awops-bench-restore-"))
    # No autovacuum: right after the build it would vacuum the 500 MB source for the first
    # rounds (and start on each restored database), slowing whichever run it overlaps. Every
    # measured database is new and dropped after its run, so none needs it.
    cluster = (
        PgCluster(extra_settings={"shared_buffers": "256MB", "autovacuum": "off"}).init().start()
    )
    moto = None
    try:
        db, _ = actingweb_database(cluster, args.size_mb)

        target = work / "backups"
        local_env = clean_environ(db.awops_env(AWOPS_BACKUP_TARGET=f"file://{target}"))
        timed(awops("run-once", "pg-backup", "--json"), local_env)
        (dump,) = target.glob("*.dump")

        moto, s3_base_env = s3_target(local_env)
        key, recipient = age_key(work)
        s3_env = {
            **s3_base_env,
            "AWOPS_JOB_PG_BACKUP_RECIPIENTS": recipient,
            "AWOPS_JOB_PG_BACKUP_VERIFY_IDENTITY_FILE": str(key),
            "AWOPS_JOB_PG_BACKUP_VERIFY_WORK_DIR": str(work),
        }
        _, _, stdout = timed(awops("run-once", "pg-backup", "--json"), s3_env)
        encrypted_mib = float(str(job_details(stdout)["size_bytes"])) / MIB

        def baseline(name: str) -> list[str]:
            return [
                "sh",
                "-c",
                f"createdb {name} && pg_restore -j {jobs} --no-owner --no-privileges "
                f"--exit-on-error -d {name} {dump}",
            ]

        def restore(name: str) -> list[str]:
            return awops("restore", "postgresql", "latest", "--to-database", name, "--json")

        def floor(name: str, count: bool) -> list[str]:
            command = [sys.executable, "-m", "bench.restore_floor", str(dump), name, str(jobs)]
            return command if count else [*command, "--no-count"]

        timed(baseline("warm"), client_env(db))  # the page cache holds the dump from now on
        drop(cluster, "warm")
        base_times, local_times, s3_times, local_rss, s3_rss = [], [], [], [], []
        floor_times: dict[bool, list[float]] = {True: [], False: []}
        # awops' own account of each run: fetch (hash, download, decrypt) and pg_restore.
        local_docs: list[dict[str, Any]] = []
        s3_docs: list[dict[str, Any]] = []

        def settle() -> None:
            # What one run leaves (dirty buffers, WAL) is written out before the next starts,
            # so it slows neither.
            with cluster.connect(autocommit=True) as conn:
                conn.execute("CHECKPOINT")

        def run_baseline(run: int) -> None:
            seconds, _, _ = timed(baseline(f"base{run}"), client_env(db))
            base_times.append(seconds)
            drop(cluster, f"base{run}")

        def run_local(run: int) -> None:
            seconds, rss, stdout = timed(restore(f"local{run}"), local_env)
            local_times.append(seconds)
            local_rss.append(rss)
            local_docs.append(json.loads(stdout))
            drop(cluster, f"local{run}")

        def run_s3(run: int) -> None:
            seconds, rss, stdout = timed(restore(f"s3age{run}"), s3_env)
            s3_times.append(seconds)
            s3_rss.append(rss)
            s3_docs.append(json.loads(stdout))
            drop(cluster, f"s3age{run}")

        def run_floor(run: int, count: bool) -> None:
            seconds, _, _ = timed(floor(f"floor{run}", count), client_env(db))
            floor_times[count].append(seconds)
            drop(cluster, f"floor{run}")

        order = [
            run_baseline,
            run_local,
            run_s3,
            functools.partial(run_floor, count=True),
            functools.partial(run_floor, count=False),
        ]
        for run in range(args.runs):
            # The order turns each round: none of them always runs first.
            for step in order[run % len(order) :] + order[: run % len(order)]:
                settle()
                step(run)

        base = statistics.median(base_times)
        local = statistics.median(local_times)
        remote = statistics.median(s3_times)

        def runs(times: list[float]) -> str:
            return ", ".join(f"{t:.2f}" for t in times)

        print(f"runs each (interleaved):                {args.runs}, pg_restore -j {jobs}")
        print(
            f"dump: {dump.stat().st_size / MIB:.1f} MiB (local), {encrypted_mib:.1f} MiB (S3, age)"
        )
        print(f"createdb + pg_restore median:           {base:.2f} s  (runs {runs(base_times)})")
        print(f"awops restore, local median:            {local:.2f} s  (runs {runs(local_times)})")
        print(f"awops restore, S3 + age median:         {remote:.2f} s  (runs {runs(s3_times)})")
        print(f"ratio local / pg_restore:               {local / base:.3f} (target <= 1.05)")
        print(f"ratio S3 + age / pg_restore:            {remote / base:.3f} (target <= 1.15)")
        for label, times in (
            ("local", local_times),
            ("S3 + age", s3_times),
            ("floor, counted", floor_times[True]),
            ("floor, not counted", floor_times[False]),
        ):
            print(f"{'paired ratio ' + label + ':':<40}{paired(times, base_times):.3f}")
        for label, times in (
            ("floor, counted", floor_times[True]),
            ("floor, not counted", floor_times[False]),
        ):
            print(
                f"{label + ' median:':<40}{statistics.median(times):.2f} s  "
                f"(ratio {statistics.median(times) / base:.3f}; runs {runs(times)})"
            )
        print(
            f"peak RSS of awops:                      local {max(local_rss):.1f} MiB, "
            f"S3 + age {max(s3_rss):.1f} MiB (target <= 100)"
        )
        for label, times, docs in (
            ("local", local_times, local_docs),
            ("S3 + age", s3_times, s3_docs),
        ):
            fetch = statistics.median(d["fetch_seconds"] for d in docs)
            restored = statistics.median(d["restore_seconds"] for d in docs)
            counted = statistics.median(d["count_seconds"] for d in docs)
            outside = statistics.median(
                t - d["restore_seconds"] for t, d in zip(times, docs, strict=True)
            )
            print(
                f"awops {label}: fetch {fetch:.2f} s, pg_restore {restored:.2f} s, "
                f"row counts {counted:.2f} s, "
                f"everything but pg_restore {outside:.2f} s (medians)"
            )
    finally:
        if moto is not None:
            moto.process.kill()
            moto.process.wait()
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

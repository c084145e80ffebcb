"""``pg-backup`` against plain ``pg_dump -Fc -f`` on an ActingWeb-shaped database.

Builds a throwaway cluster with about ``--size-mb`` of ActingWeb data (actors, properties,
trusts, subscriptions, diffs and JSONB attributes), then runs ``awops run-once pg-backup`` to
a local directory and ``pg_dump -Fc -f`` interleaved, ``--runs`` times each, and prints the
medians, their ratio (target at most 1.05) and awops' peak RSS (target at most 100 MiB). Then
the S3 path (moto) and ``pg-backup-verify`` once each, and awops' peak RSS again at twice the
size. Run it alone on the machine:

    flock /tmp/awops-bench.lock python -m bench.backup [--size-mb 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.fix_awops import clean_environ
from tests.fix_moto import MotoServer, start_moto
from tests.fix_pg import PgCluster, PgDatabase
from tests.fix_schema import create_actingweb_schema

MIB = 1024 * 1024
# Rows per megabyte of database, measured on PostgreSQL 15 with this generator.
ACTORS_PER_MB = 58

GENERATE = """
INSERT INTO actors
SELECT 'actor' || g, 'creator' || (g %% 1000) || '@example.com', md5(g::text || 'p'),
       now() - (g %% 1000) * interval '1 hour'
FROM generate_series(%(first)s::int, %(last)s::int) g;
INSERT INTO properties
SELECT 'actor' || g, 'prop' || p, md5(g::text || p) || md5(p::text || g)
FROM generate_series(%(first)s::int, %(last)s::int) g, generate_series(1, 12) p;
INSERT INTO trusts (id, peerid, baseuri, type, relationship, secret, approved, peer_approved,
                    verified, created_at)
SELECT 'actor' || g, 'peer' || t, 'https://peer' || t || '.example.com/' || md5(g::text),
       'urn:actingweb:example', 'friend', md5(g::text || t || 's'), true, true, true, now()
FROM generate_series(%(first)s::int, %(last)s::int) g, generate_series(1, 3) t;
INSERT INTO subscriptions
SELECT 'actor' || g, 'sub' || s, 'peer' || s, 'sub' || s, 'high', 'properties', NULL, NULL,
       s, true
FROM generate_series(%(first)s::int, %(last)s::int) g, generate_series(1, 2) s;
INSERT INTO subscription_diffs
SELECT 'actor' || g, 'sub' || d || ':' || d, 'sub' || d, now(),
       repeat(md5(g::text || d), 6), d
FROM generate_series(%(first)s::int, %(last)s::int) g, generate_series(1, 4) d;
INSERT INTO attributes
SELECT 'actor' || g, 'bucket' || b || ':' || md5(g::text || b), 'bucket' || b, 'attr' || b,
       jsonb_build_object('token', md5(g::text || b), 'scope', 'read write',
                          'client', 'client' || (g %% 97), 'chain_id', md5(b::text || g),
                          'history', jsonb_build_array(g, b, md5(g::text)))
       , now(), CASE WHEN b %% 2 = 0 THEN extract(epoch FROM now())::bigint + g ELSE NULL END
FROM generate_series(%(first)s::int, %(last)s::int) g, generate_series(1, 25) b;
"""


def grow(db: PgDatabase, first: int, last: int) -> None:
    with db.connect(autocommit=True) as conn:
        step = 5000
        for start in range(first, last + 1, step):
            bounds = {"first": start, "last": min(start + step - 1, last)}
            for statement in filter(str.strip, GENERATE.split(";")):
                conn.execute(statement, bounds)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def database_mb(db: PgDatabase) -> float:
    with db.connect() as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return float(row[0]) / MIB


def actingweb_database(cluster: PgCluster, size_mb: float) -> tuple[PgDatabase, int]:
    """A database ``actingweb`` with ActingWeb's schema and about ``size_mb`` of rows; it and
    its number of actors. Says its size and how long it took on stdout."""
    db = cluster.create_database("actingweb")
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
    actors = int(size_mb * ACTORS_PER_MB)
    started = time.perf_counter()
    grow(db, 1, actors)
    print(
        f"database: {database_mb(db):.0f} MiB ({actors} actors), built in "
        f"{time.perf_counter() - started:.0f} s"
    )
    return db, actors


def _high_water_mib(pid: int) -> float:
    """VmHWM of one process (not its children), 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB of the process itself (not pg_dump), stdout."""
    # Byte code cached, as on a deployed host (pip compiles it at install): a shell that sets
    # PYTHONDONTWRITEBYTECODE would otherwise make every run compile awops from source.
    env = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], _high_water_mib(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        # VmHWM is sampled until exit; ru_maxrss also covers the children (pg_dump).
        self_peak = peak[0] or usage.ru_maxrss / 1024
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode()
        if process.returncode != 0:
            sys.exit(f"{command[:4]} failed ({process.returncode}):\n{stdout}\n{err.read()!r}")
    return elapsed, self_peak, stdout


def awops(*args: str) -> list[str]:
    return [sys.executable, "-m", "awops", *args]


def client_env(db: PgDatabase) -> dict[str, str]:
    """libpq's variables for the PostgreSQL client programs, as the superuser."""
    return clean_environ(
        {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(db.cluster.port),
            "PGUSER": "postgres",
            "PGPASSWORD": db.cluster.password,
        }
    )


def pg_dump_env(db: PgDatabase) -> dict[str, str]:
    return {**client_env(db), "PGDATABASE": db.name}


def s3_target(env: dict[str, str]) -> tuple[MotoServer, dict[str, str]]:
    """A moto server holding the bench's bucket, and ``env`` with pg-backup's target in it."""
    moto = start_moto()
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name="us-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(
        Bucket="awops-bench", CreateBucketConfiguration={"LocationConstraint": "us-west-1"}
    )
    return moto, {
        **env,
        **moto.aws_env(),
        "AWOPS_BACKUP_TARGET": "s3://awops-bench/pg",
        "AWOPS_BACKUP_S3_ENDPOINT_URL": moto.url,
    }


def job_details(stdout: str) -> dict[str, object]:
    (job,) = json.loads(stdout)["jobs"]
    return dict(job["details"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=float, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-double", action="store_true", help="skip the 2x size run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="awops-bench-backup-"))
    cluster = PgCluster(extra_settings={"shared_buffers": "256MB"}).init().start()
    moto = None
    try:
        db, actors = actingweb_database(cluster, args.size_mb)

        target = work / "awops"
        env = clean_environ(
            db.awops_env(
                AWOPS_BACKUP_TARGET=f"file://{target}",
                AWOPS_JOB_PG_BACKUP_KEEP_LAST="1",
                AWOPS_JOB_PG_BACKUP_KEEP_DAILY="0",
                AWOPS_JOB_PG_BACKUP_KEEP_WEEKLY="0",
                AWOPS_JOB_PG_BACKUP_KEEP_MONTHLY="0",
            )
        )
        plain = work / "plain.dump"
        baseline_cmd = ["pg_dump", "-Fc", "-f", str(plain)]
        timed(baseline_cmd, pg_dump_env(db))  # warm the page cache
        awops_times, awops_rss, base_times, base_rss = [], [], [], []
        for _ in range(args.runs):
            seconds, rss, stdout = timed(awops("run-once", "pg-backup", "--json"), env)
            awops_times.append(seconds)
            awops_rss.append(rss)
            details = job_details(stdout)
            seconds, rss, _ = timed(baseline_cmd, pg_dump_env(db))
            base_times.append(seconds)
            base_rss.append(rss)
        awops_median = statistics.median(awops_times)
        base_median = statistics.median(base_times)
        print(f"runs each (interleaved):          {args.runs}")
        print(
            f"dump size:                        {int(details['size_bytes']) / MIB:.1f} MiB "
            f"(plain pg_dump {plain.stat().st_size / MIB:.1f} MiB)"
        )
        print(
            f"pg_dump -Fc -f median:            {base_median:.2f} s  "
            f"(runs {', '.join(f'{t:.2f}' for t in base_times)})"
        )
        print(
            f"awops run-once pg-backup median:  {awops_median:.2f} s  "
            f"(runs {', '.join(f'{t:.2f}' for t in awops_times)})"
        )
        print(
            f"ratio awops / pg_dump:            {awops_median / base_median:.3f} (target <= 1.05)"
        )
        print(
            f"peak RSS of awops:                {max(awops_rss):.1f} MiB (target <= 100); "
            f"of pg_dump -f {max(base_rss):.1f} MiB"
        )

        moto, s3_env = s3_target(env)
        seconds, rss, _ = timed(awops("run-once", "pg-backup", "--json"), s3_env)
        print(f"S3 (moto) pg-backup:              {seconds:.2f} s, peak RSS {rss:.1f} MiB")
        seconds, rss, stdout = timed(awops("run-once", "pg-backup-verify", "--json"), env)
        verify = job_details(stdout)
        print(
            f"pg-backup-verify (local, -j 2):   {seconds:.2f} s, restore "
            f"{verify['restore_seconds']} s, peak RSS {rss:.1f} MiB"
        )
        seconds, rss, stdout = timed(awops("run-once", "pg-backup-verify", "--json"), s3_env)
        verify = job_details(stdout)
        print(
            f"pg-backup-verify (S3, -j 2):      {seconds:.2f} s, restore "
            f"{verify['restore_seconds']} s, peak RSS {rss:.1f} MiB"
        )
        moto.process.terminate()
        moto.process.wait(10)
        moto = None

        if not args.skip_double:
            grow(db, actors + 1, 2 * actors)
            print(f"database grown to {database_mb(db):.0f} MiB")
            seconds, rss, _ = timed(awops("run-once", "pg-backup", "--json"), env)
            base_seconds, _, _ = timed(baseline_cmd, pg_dump_env(db))
            print(
                f"2x size: awops {seconds:.2f} s, pg_dump {base_seconds:.2f} s, "
                f"ratio {seconds / base_seconds:.3f}, peak RSS awops {rss:.1f} MiB"
            )
    finally:
        if moto is not None:
            moto.process.kill()
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

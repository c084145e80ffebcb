"""Soak: ``awops run`` with 1-second schedules against a throwaway PostgreSQL and moto.

Every enabled job (pg-health, pg-ttl-purge, pg-backup to a local directory, dynamodb-gsi,
dynamodb-ttl, dynamodb-pitr) is scheduled every ``--interval`` seconds without jitter, and
rows keep expiring so the purge has work. Every 10 s the bench samples the daemon's resident
memory (VmRSS), its open file descriptors and its PostgreSQL sessions (``pg_stat_activity``).

Checks, after a one-minute warm-up:

* RSS grows by less than 5 MiB (median of the last minute against the first minute);
* file descriptors and PostgreSQL sessions do not grow (last minute's maximum is no higher
  than the warm-up's maximum);
* every scheduled run is accounted for: for each job, the runs in /metrics (all statuses)
  plus the fires APScheduler reported as skipped (a run still going, or missed) equal the
  slots elapsed, within one slot at each end.

    python -m bench.soak [--seconds 600] [--interval 1]

Run it under ``flock /tmp/awops-bench.lock``. Exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fix_awops import clean_environ
from tests.fix_dynamodb import create_actingweb_tables, dynamodb_client, protect_tables
from tests.fix_moto import start_moto
from tests.fix_pg import PgCluster, free_port
from tests.fix_schema import create_actingweb_schema

JOBS = ("pg-health", "pg-ttl-purge", "pg-backup", "dynamodb-gsi", "dynamodb-ttl", "dynamodb-pitr")
SAMPLE_SECONDS = 10.0
WARMUP_SECONDS = 60.0
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    runs: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "awops_job_runs_total":
                job = sample.labels["job"]
                runs[job] = runs.get(job, 0) + sample.value
    return runs


def run_soak(seconds: float, interval: float = 1.0) -> dict[str, Any]:
    cluster = PgCluster(max_connections=60).init().start()
    moto = start_moto()
    workdir = Path(tempfile.mkdtemp(prefix="awops-soak-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        db = cluster.create_database()
        with db.connect(autocommit=True) as conn:
            create_actingweb_schema(conn)
        client = dynamodb_client(moto)
        names = create_actingweb_tables(client)
        protect_tables(client, names, ttl_table="demo_actingweb_attributes")
        backups = workdir / "backups"
        backups.mkdir()
        port = free_port()
        config = workdir / "awops.toml"
        tables = [
            f'[metrics]\naddr = "127.0.0.1:{port}"',
            '[logging]\nformat = "json"',
            f'[backup]\ntargets = ["file://{backups}"]',
        ]
        for job in JOBS:
            tables.append(
                f'[jobs.{job}]\nenabled = true\nschedule = "every {interval:g}s"\n'
                "jitter_seconds = 0"
            )
        config.write_text("\n".join(tables) + "\n")
        env = clean_environ(
            {**db.awops_env(), **moto.aws_env(), "AWOPS_BACKENDS": "postgresql,dynamodb"}
        )
        log = workdir / "daemon.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "awops", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape(port)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"daemon did not start; see {log}") from None
                time.sleep(0.2)
        started_wall = time.time()
        started = time.monotonic()
        samples: list[dict[str, float]] = []
        while time.monotonic() - started < seconds:
            elapsed = time.monotonic() - started
            with db.connect(autocommit=True) as conn:
                # Rows that expired a while ago, so pg-ttl-purge has something every run.
                conn.execute(
                    "INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)"
                    " SELECT md5(random()::text), 'soak', 'soak', 'n',"
                    " extract(epoch FROM now())::bigint - 3600 FROM generate_series(1, 200)"
                )
                sessions = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                    " AND application_name LIKE 'awops%%'",
                    [db.name],
                ).fetchone()
            samples.append(
                {
                    "t": round(elapsed, 1),
                    "rss_mib": rss_bytes(process.pid) / MIB,
                    "fds": open_fds(process.pid),
                    "pg_sessions": sessions[0] if sessions else 0,
                }
            )
            time.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - started - elapsed)))
        ended_wall = time.time()
        runs = scrape(port)
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        return check(samples, runs, log, started_wall, ended_wall, interval, workdir)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        moto.process.terminate()
        moto.process.wait(10)
        cluster.destroy()


def check(
    samples: list[dict[str, float]],
    runs: dict[str, float],
    log: Path,
    started_wall: float,
    ended_wall: float,
    interval: float,
    workdir: Path,
) -> dict[str, Any]:
    failures = []
    warm = [s for s in samples if WARMUP_SECONDS <= s["t"] < 2 * WARMUP_SECONDS] or samples[:6]
    last = [s for s in samples if s["t"] >= samples[-1]["t"] - WARMUP_SECONDS] or samples[-6:]
    rss_growth = statistics.median(s["rss_mib"] for s in last) - statistics.median(
        s["rss_mib"] for s in warm
    )
    if rss_growth >= 5:
        failures.append(f"RSS grew {rss_growth:.2f} MiB")
    for key in ("fds", "pg_sessions"):
        if max(s[key] for s in last) > max(s[key] for s in warm):
            failures.append(
                f"{key} grew: {max(s[key] for s in warm)} -> {max(s[key] for s in last)}"
            )
    skipped_fires: dict[str, int] = {}
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = record.get("msg", "")
        if record.get("logger", "").startswith("apscheduler") and (
            "maximum number of running instances" in message or "was missed by" in message
        ):
            for job in JOBS:
                if f'"{job}' in message or f"({job}" in message or f"'{job}'" in message:
                    skipped_fires[job] = skipped_fires.get(job, 0) + 1
    accounted: dict[str, dict[str, float]] = {}
    # The daemon was up before started_wall; count the slots it could have fired in.
    for job in JOBS:
        total = runs.get(job, 0) + skipped_fires.get(job, 0)
        accounted[job] = {
            "runs_in_metrics": runs.get(job, 0),
            "fires_skipped": skipped_fires.get(job, 0),
        }
        accounted[job]["accounted"] = total
    first_runs = _first_fire_times(log)
    for job in JOBS:
        first = first_runs.get(job)
        if first is None:
            failures.append(f"{job} never ran")
            continue
        slots = int((ended_wall - first) // interval) + 1
        accounted[job]["slots"] = slots
        if abs(accounted[job]["accounted"] - slots) > 1:
            failures.append(f"{job}: {accounted[job]['accounted']:g} accounted of {slots} slots")
    return {
        "seconds": round(samples[-1]["t"], 1),
        "rss_mib_warm": round(statistics.median(s["rss_mib"] for s in warm), 2),
        "rss_mib_last": round(statistics.median(s["rss_mib"] for s in last), 2),
        "rss_growth_mib": round(rss_growth, 2),
        "fds_warm_max": max(s["fds"] for s in warm),
        "fds_last_max": max(s["fds"] for s in last),
        "pg_sessions_warm_max": max(s["pg_sessions"] for s in warm),
        "pg_sessions_last_max": max(s["pg_sessions"] for s in last),
        "runs": accounted,
        "failures": failures,
        "workdir": str(workdir),
    }


def _first_fire_times(log: Path) -> dict[str, float]:
    """When each job's first run started, from the daemon's JSON log."""
    import datetime as dt

    first: dict[str, float] = {}
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        job = record.get("job")
        if job and job not in first and record.get("msg", "").startswith(("starting", "finished")):
            stamp = dt.datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            first[job] = stamp.replace(tzinfo=dt.UTC).timestamp()
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    figures = run_soak(args.seconds, args.interval)
    print(json.dumps(figures, indent=2, default=str))
    raise SystemExit(1 if figures["failures"] else 0)


if __name__ == "__main__":
    main()

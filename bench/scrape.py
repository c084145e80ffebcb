"""``/metrics`` latency and resident memory: the awops daemon against prometheus-postgres-exporter.

On one throwaway PostgreSQL cluster (ActingWeb's schema, some rows) and one moto server, it runs
``awops run`` with both backends configured and every default-enabled job on a 1-second
schedule, beside the Debian package ``prometheus-postgres-exporter`` on the same database.
After a warm-up it times ``--scrapes`` scrapes of each (interleaved), then lets both run for
``--duration`` seconds, scraped every 15 s as Prometheus would, and reports each process'
RSS at the start and end of that period.

Targets: awops p50 at or below the exporter's; awops RSS at most 80 MiB, growing under 5 MiB.

    flock /tmp/awops-bench.lock python -m bench.scrape [--duration 600] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import shutil
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
from tests.fix_dynamodb import create_actingweb_tables
from tests.fix_moto import start_moto
from tests.fix_pg import PgCluster, PgDatabase, free_port
from tests.fix_schema import create_actingweb_schema

EXPORTER = "prometheus-postgres-exporter"
MIB = 1024 * 1024
PROMETHEUS_INTERVAL_SECONDS = 15


def seed(db: PgDatabase) -> None:
    """Enough rows that the table and TTL figures have something to count."""
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
        conn.execute(
            "INSERT INTO actors (id, creator, passphrase)"
            " SELECT 'a' || i, 'c' || i, 'p' FROM generate_series(1, 1000) i"
        )
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)"
            " SELECT 'a' || (i % 1000), 'b:' || i, 'b', 'n' || i,"
            " extract(epoch FROM now())::bigint + 600 - i FROM generate_series(1, 5000) i"
        )


def write_config(path: Path, metrics_port: int) -> list[str]:
    """A config putting every default-enabled job on a 1-second schedule; returns their names."""
    from awops.registry import builtin_registry

    jobs = [job.name for job in builtin_registry() if job.default_enabled]
    lines = [f'[metrics]\naddr = "127.0.0.1:{metrics_port}"\n', "[daemon]\n"]
    lines.append("shutdown_timeout_seconds = 10\n")
    for name in jobs:
        lines.append(f'[jobs.{name}]\nschedule = "every 1s"\njitter_seconds = 0\n')
    path.write_text("".join(lines))
    return jobs


def fetch(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait_for(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            fetch(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:g} s")


def job_runs(body: str) -> dict[str, dict[str, float]]:
    """awops_job_runs_total as {job: {status: count}}."""
    runs: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(body):
        if family.name == "awops_job_runs":
            for sample in family.samples:
                if sample.name == "awops_job_runs_total":
                    job, status = sample.labels["job"], sample.labels["status"]
                    runs.setdefault(job, {})[status] = sample.value
    return runs


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def timed_scrape(url: str) -> float:
    started = time.perf_counter()
    fetch(url)
    return time.perf_counter() - started


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds to watch RSS")
    parser.add_argument("--scrapes", type=int, default=200, help="timed scrapes of each")
    parser.add_argument("--warmup", type=float, default=20, help="seconds before measuring")
    args = parser.parse_args()
    exporter_binary = shutil.which(EXPORTER)
    if exporter_binary is None:
        raise SystemExit(f"{EXPORTER} not found (apt-get install {EXPORTER})")

    workdir = Path(tempfile.mkdtemp(prefix="awops-bench-scrape-"))
    cluster = PgCluster().init().start()
    moto = start_moto()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        db = cluster.create_database()
        seed(db)
        import boto3

        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=moto.url,
            region_name="us-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        create_actingweb_tables(dynamodb)

        awops_port, exporter_port = free_port(), free_port()
        config = workdir / "awops.toml"
        jobs = write_config(config, awops_port)
        backups = workdir / "backups"
        backups.mkdir()
        env = clean_environ(
            {
                **db.awops_env(),
                **moto.aws_env(),
                "AWOPS_BACKENDS": "postgresql,dynamodb",
                "AWOPS_BACKUP_TARGET": f"file://{backups}",
                "AWOPS_LOG_LEVEL": "WARNING",
            }
        )
        awops = subprocess.Popen(
            [sys.executable, "-m", "awops", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "awops.log").open("w"),
        )
        processes.append(awops)
        dsn = (
            f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/{db.name}"
            "?sslmode=disable"
        )
        exporter = subprocess.Popen(
            [exporter_binary, f"--web.listen-address=127.0.0.1:{exporter_port}"],
            env={"PATH": "/usr/bin:/bin", "DATA_SOURCE_NAME": dsn},
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "exporter.log").open("w"),
        )
        processes.append(exporter)
        awops_url = f"http://127.0.0.1:{awops_port}/metrics"
        exporter_url = f"http://127.0.0.1:{exporter_port}/metrics"
        wait_for(f"http://127.0.0.1:{awops_port}/readyz", awops, "awops")
        wait_for(exporter_url, exporter, EXPORTER)
        time.sleep(args.warmup)

        awops_times: list[float] = []
        exporter_times: list[float] = []
        for _ in range(args.scrapes):
            awops_times.append(timed_scrape(awops_url))
            exporter_times.append(timed_scrape(exporter_url))

        runs_before = job_runs(fetch(awops_url))
        rss_start = {"awops": rss_bytes(awops.pid), "exporter": rss_bytes(exporter.pid)}
        rss_peak = dict(rss_start)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.duration:
            time.sleep(min(PROMETHEUS_INTERVAL_SECONDS, args.duration - elapsed))
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
            fetch(awops_url), fetch(exporter_url)
            for name, process in (("awops", awops), ("exporter", exporter)):
                rss_peak[name] = max(rss_peak[name], rss_bytes(process.pid))
        rss_end = {"awops": rss_bytes(awops.pid), "exporter": rss_bytes(exporter.pid)}
        runs_after = job_runs(fetch(awops_url))
        report(args, jobs, awops_times, exporter_times, rss_start, rss_end, rss_peak)
        report_runs(jobs, runs_before, runs_after)
    finally:
        for process in processes:
            stop(process)
        moto.process.terminate()
        moto.process.wait(10)
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def report(
    args: Any,
    jobs: list[str],
    awops_times: list[float],
    exporter_times: list[float],
    rss_start: dict[str, int],
    rss_end: dict[str, int],
    rss_peak: dict[str, int],
) -> None:
    awops_p50, exporter_p50 = statistics.median(awops_times), statistics.median(exporter_times)
    print(f"jobs on a 1 s schedule ({len(jobs)}): {', '.join(jobs)}")
    print(f"scrapes each (interleaved): {args.scrapes}")
    print(f"{'':28}{'p50 ms':>9}{'p99 ms':>9}")
    for name, times in (("awops /metrics", awops_times), (EXPORTER, exporter_times)):
        p50, p99 = statistics.median(times) * 1000, percentile(times, 99) * 1000
        print(f"{name:28}{p50:9.2f}{p99:9.2f}")
    print(f"ratio awops / exporter p50: {awops_p50 / exporter_p50:.2f}x (target <= 1.0x)")
    print(
        f"RSS over {args.duration:g} s:{'start MiB':>20}{'end MiB':>9}{'peak MiB':>10}{'growth':>8}"
    )
    for name in ("awops", "exporter"):
        start, end, peak = rss_start[name] / MIB, rss_end[name] / MIB, rss_peak[name] / MIB
        label = "awops" if name == "awops" else EXPORTER
        print(f"{label:28}{start:9.1f}{end:9.1f}{peak:10.1f}{end - start:8.1f}")
    print("targets: awops RSS <= 80 MiB, growth < 5 MiB")


def report_runs(
    jobs: list[str],
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
) -> None:
    print("awops job runs during the RSS period, by status:")
    for job in jobs:
        counts = {
            status: int(count - before.get(job, {}).get(status, 0))
            for status, count in after.get(job, {}).items()
        }
        shown = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()) if count)
        print(f"  {job:26}{shown or 'none'}")


if __name__ == "__main__":
    main()

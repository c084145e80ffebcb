"""``make demo``: awops against a throwaway PostgreSQL and a moto DynamoDB, then cleaned up.

Starts both, loads a small ActingWeb-shaped dataset, runs ``awops run-once --all``, then runs
the daemon for a few seconds, shows an excerpt of its ``/metrics`` and ends with ``awops status``
and the address of its status page. Each awops command is printed with the variables the demo
set for it (secrets as ********), so it can be repeated by hand. ``AWOPS_DEMO_HOLD_SECONDS=N``
keeps the daemon up N more seconds so the page can be opened in a browser (Ctrl-C ends it
sooner).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.fix_awops import clean_environ
from tests.fix_dynamodb import create_actingweb_tables, dynamodb_client
from tests.fix_moto import start_moto
from tests.fix_pg import PgCluster, free_port
from tests.fix_schema import create_actingweb_schema

ACTORS = 200
TOKENS_PER_ACTOR = 20
MASK = "********"
# What awops reads from the environment (ActingWeb's names, boto3's, its own).
_AWOPS_VARIABLES = ("PG_", "AWS_", "AWOPS_", "DATABASE_BACKEND", "USE_PROPERTY_LOOKUP_TABLE")
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")


def awops_variables(env: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """The variables awops reads that ``env`` sets differently from ``base``, shell-quoted,
    secrets as ********."""
    shown = {}
    for name in sorted(env):
        if name.startswith(_AWOPS_VARIABLES) and base.get(name) != env[name]:
            secret = any(word in name for word in _SECRET_WORDS)
            shown[name] = MASK if secret else shlex.quote(env[name])
    return shown


def shell_command(args: Sequence[str], env: Mapping[str, str], base: Mapping[str, str]) -> str:
    """``$ NAME=value ... awops <args>``, with the variables of ``env`` not already in
    ``base`` (what was exported before)."""
    assignments = [f"{name}={value}" for name, value in awops_variables(env, base).items()]
    return "$ " + " ".join([*assignments, shlex.join(["awops", *args])])


def print_environment(env: Mapping[str, str]) -> None:
    """The variables the demo set for awops, as ``export`` lines to paste into a shell."""
    print(f"== the environment of the awops commands below ({MASK} stands for a secret)")
    for name, value in awops_variables(env, os.environ).items():
        print(f"$ export {name}={value}")


def run_awops(args: Sequence[str], env: Mapping[str, str], **kwargs: object) -> int:
    """Print the command, then run it (as this interpreter's ``-m awops``)."""
    print(shell_command(args, env, env))
    completed = subprocess.run(
        [sys.executable, "-m", "awops", *args], env=dict(env), check=False, **kwargs
    )
    return completed.returncode


def load_dataset(conn) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time())
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO actors (id, creator, passphrase) VALUES (%s, %s, 'x')",
            [(f"actor{i}", f"user{i}@example.com") for i in range(ACTORS)],
        )
        rows = []
        for actor in range(ACTORS):
            for token in range(TOKENS_PER_ACTOR):
                kind = random.random()
                ttl = None if kind < 0.25 else now + (3600 if kind < 0.5 else -3600)
                chain = json.dumps({"chain_id": f"chain{actor}-{token % 3}"})
                name = f"tok{token}"
                rows.append((f"actor{actor}", f"oauth:{name}", "oauth", name, chain, ttl))
        cur.executemany(
            "INSERT INTO attributes (id, bucket_name, bucket, name, data, ttl_timestamp)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            rows,
        )


def main() -> int:
    print("== starting a throwaway PostgreSQL and a moto DynamoDB endpoint")
    cluster = PgCluster().init().start()
    moto = start_moto()
    scratch = tempfile.TemporaryDirectory(prefix="awops-demo-")
    backups = Path(scratch.name) / "backups"
    try:
        db = cluster.create_database("actingweb")
        with db.connect(autocommit=True) as conn:
            create_actingweb_schema(conn)
            load_dataset(conn)
        dynamodb = dynamodb_client(moto)
        create_actingweb_tables(dynamodb)
        dynamodb.update_time_to_live(
            TableName="demo_actingweb_attributes",
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl_timestamp"},
        )
        for table in dynamodb.list_tables()["TableNames"]:
            dynamodb.update_continuous_backups(
                TableName=table,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        env = clean_environ(
            {
                **db.awops_env(),
                **moto.aws_env(),
                "AWOPS_BACKENDS": "postgresql,dynamodb",
                "AWOPS_BACKUP_TARGET": f"file://{backups}",
            }
        )
        print(f"== loaded {ACTORS} actors and {ACTORS * TOKENS_PER_ACTOR} attributes\n")
        print_environment(env)
        print("\n== awops jobs")
        run_awops(["jobs"], env)
        print("\n== awops run-once --all")
        code = run_awops(["run-once", "--all"], env, stderr=subprocess.DEVNULL)
        print(f"(exit code {code})\n")
        show_metrics_excerpt(env)
    finally:
        moto.process.terminate()
        cluster.destroy()
        scratch.cleanup()
        print("\n== cleaned up")
    return 0


def show_metrics_excerpt(env: dict[str, str]) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "awops.toml"
        config.write_text(
            f'[metrics]\naddr = "127.0.0.1:{port}"\n'
            '[jobs.pg-health]\nschedule = "every 1s"\njitter_seconds = 0\n'
        )
        log = Path(tmp) / "daemon.log"
        print(f"== awops run, with {config}:")
        print("   " + config.read_text().strip().replace("\n", "\n   "))
        print(shell_command(["run", "--config", str(config)], env, env))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "awops", "run", "--config", str(config)],
            env=env,
            stderr=log.open("w"),
        )
        try:
            body = ""
            for _ in range(150):
                time.sleep(0.2)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                        body = r.read().decode()
                except OSError:
                    continue
                if 'awops_job_runs_total{job="pg-health",status="ok"} 1.0' in body:
                    break
            print(f"== awops run: excerpt of http://127.0.0.1:{port}/metrics")
            if not body:
                print("(no answer from the daemon; its log follows)")
                print(log.read_text()[-3000:])
            shown = (
                "awops_job_runs_total",
                "awops_job_healthy",
                "awops_pg_up",
                "awops_pg_ping",
                "awops_pg_connections",
                "awops_pg_ttl_",
                "awops_dynamodb_table_active",
            )
            for line in body.splitlines():
                wanted = line.startswith(shown) and "_created" not in line
                if wanted and not line.endswith(" 0.0"):
                    print("  " + line)
            show_status(env, f"http://127.0.0.1:{port}")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)


def show_status(env: dict[str, str], url: str) -> None:
    """``awops status`` against the running daemon, then where its page is."""
    print(f"\n== awops status --url {url}")
    status = subprocess.run(
        [sys.executable, "-m", "awops", "status", "--url", url], env=env, check=False
    )
    print(f"(exit code {status.returncode}: 1 when a job's last run found a problem)")
    hold_seconds = float(os.environ.get("AWOPS_DEMO_HOLD_SECONDS", "0") or 0)
    print(f"\n== the status page: {url}/ (and {url}/api/status)")
    if hold_seconds <= 0:
        print("   set AWOPS_DEMO_HOLD_SECONDS=600 to keep the daemon up and open it in a browser")
        return
    print(f"   the daemon stays up for {hold_seconds:g} s; Ctrl-C ends it sooner")
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(hold_seconds)


if __name__ == "__main__":
    sys.exit(main())

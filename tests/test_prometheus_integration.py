"""The Grafana dashboard and the alert rules against a real Prometheus scraping a real daemon.

``awops run`` runs every job on a 1 s schedule against a throwaway PostgreSQL and moto; a real
Prometheus on loopback scrapes it every second and loads the alert rules. Every PromQL
expression of the dashboard and of the rules must then evaluate without error through
Prometheus' HTTP API, and every dashboard query must return data, except those in
``NO_DATA_EXPECTED`` (each with its reason). ``promtool check metrics`` must find nothing
wrong with what awops serves.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from awops.metrics import catalogue
from tests.fix_awops import clean_environ
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase, free_port
from tests.fix_pgbackrest import PgBackRestStanza
from tests.fix_rds import CLUSTER, INSTANCE, create_cluster, create_instance, rds_client
from tests.fix_schema import create_actingweb_schema

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "awops.json"
RULES = ROOT / "deploy" / "prometheus" / "awops-rules.yml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason="prometheus missing"),
]

# Dashboard queries allowed to return nothing here, with the reason. Keep this list short: a
# query that returns nothing in a healthy, busy deployment is a broken panel.
NO_DATA_EXPECTED: dict[str, str] = {
    'sum by (job) (increase(awops_job_lock_skipped_total{instance=~".*"}[1m]))': (
        "one daemon here: a run is skipped for its lock only when another replica took the slot"
    ),
    'sum by (job) (increase(awops_job_lock_takeovers_total{instance=~".*"}[1m]))': (
        "a takeover needs a replica that died while holding a job's lock"
    ),
}

# Grafana's variables, as Grafana would substitute them for "All" instances.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}
DATA_DEADLINE_SECONDS = 90.0


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) for every target of every panel."""
    document = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    return queries


def rule_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def http_json(url: str, timeout: float = 10) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


class Prometheus:
    def __init__(self, target: str, workdir: Path) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        shutil.copy(RULES, workdir / "awops-rules.yml")
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": ["awops-rules.yml"],
                    "scrape_configs": [
                        {
                            "job_name": "awops",
                            # awops' job series carry the awops job in `job` (see the rules).
                            "honor_labels": True,
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        self.log = workdir / "prometheus.log"
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("prometheus exited: " + self.log.read_text()) from None
                time.sleep(0.2)
        raise RuntimeError("prometheus not ready within 60 s")

    def query(self, expr: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        result: dict[str, Any] = http_json(url)
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


def has_data(response: dict[str, Any]) -> bool:
    return response.get("status") == "success" and bool(response["data"]["result"])


def write_daemon_config(
    path: Path, port: int, backup_dir: Path, pgbackrest: PgBackRestStanza
) -> None:
    every_second = {"schedule": "every 1s", "jitter_seconds": 0}
    jobs: dict[str, dict[str, Any]] = {
        "pg-health": {},
        "pg-ttl-purge": {},
        "pg-backup": {},
        "pg-backup-verify": {},
        "dynamodb-gsi": {},
        "dynamodb-ttl": {},
        "dynamodb-pitr": {},
        # Off by default; on here so their panels are proven too.
        "dynamodb-backup": {"enabled": True},
        "dynamodb-restore-verify": {"enabled": True, "tables": ["attributes"]},
        # Off until it names an RDS instance or Aurora cluster: moto's (see running_stack).
        "rds-backup": {"instance": INSTANCE, "cluster": CLUSTER},
        # A stanza of its own cluster; the restore test reads that cluster's database.
        "pgbackrest": {"stanza": pgbackrest.name, "config": str(pgbackrest.config)},
        "pgbackrest-restore-verify": {
            "enabled": True,
            "schedule": "every 15s",
            "work_dir": str(pgbackrest.work_dir("prometheus-work")),
            "database": "actingweb",
            "user": "postgres",
        },
    }
    lines = [
        'backends = ["postgresql", "dynamodb"]',
        f'[metrics]\naddr = "127.0.0.1:{port}"',
        "[daemon]\nshutdown_timeout_seconds = 10",
        f'[backup]\ntargets = ["file://{backup_dir}"]',
    ]
    for name, extra in jobs.items():
        lines.append(f"[jobs.{name}]")
        for key, value in {**every_second, **extra}.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")


def seed_expired_rows(db: PgDatabase) -> None:
    """Rows whose TTL passed long ago, so the purge and backlog panels have something."""
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, data, ttl_timestamp) "
            "SELECT 'actor' || n, 'oauth_sessions:' || n, 'oauth_sessions', 's', '{}', "
            "extract(epoch FROM now())::bigint - 86400 FROM generate_series(1, 500) AS n"
        )


def seed_expired_items(client: Any) -> None:
    for n in range(5):
        client.put_item(
            TableName="demo_actingweb_attributes",
            Item={
                "id": {"S": f"actor{n}"},
                "bucket_name": {"S": f"oauth_sessions:{n}"},
                "ttl_timestamp": {"N": str(int(time.time()) - 86400)},
            },
        )


@pytest.fixture
def aw_db(pg_cluster_factory: Any) -> PgDatabase:
    """ActingWeb's database, here on a server that archives WAL and keeps a replication slot,
    so the WAL archiving and slot panels show real figures."""
    cluster = pg_cluster_factory(extra_settings={"archive_mode": "on", "archive_command": "true"})
    db = cluster.create_database()
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
        conn.execute("SELECT pg_create_physical_replication_slot('awops_standby', true)")
        conn.execute("SELECT pg_switch_wal()")  # a first file to archive
    return db


@pytest.fixture
def running_stack(
    aw_db: PgDatabase,
    aw_dynamodb: Any,
    moto: MotoServer,
    pgbackrest_stanza: PgBackRestStanza,
    tmp_path: Path,
) -> Iterator[tuple[Prometheus, str]]:
    seed_expired_rows(aw_db)
    seed_expired_items(aw_dynamodb)
    create_instance(rds_client(moto))
    create_cluster(rds_client(moto))
    port = free_port()
    config = tmp_path / "awops.toml"
    backups = tmp_path / "backups"
    backups.mkdir()
    write_daemon_config(config, port, backups, pgbackrest_stanza)
    log = tmp_path / "daemon.log"
    env = clean_environ({**aw_db.awops_env(), **moto.aws_env(), "AWS_ENDPOINT_URL_RDS": moto.url})
    env.pop("DATABASE_BACKEND")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "awops", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    workdir = Path(tempfile.mkdtemp(prefix="awops-prom-"))
    prometheus = Prometheus(f"127.0.0.1:{port}", workdir)
    try:
        prometheus.wait_ready()
        yield prometheus, f"http://127.0.0.1:{port}"
    finally:
        prometheus.kill()
        if daemon.poll() is None:
            daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
        if sys.exc_info()[0] is not None:
            print(log.read_text()[-5000:])


def test_every_dashboard_query_and_rule_works_against_real_metrics(
    running_stack: tuple[Prometheus, str],
) -> None:
    prometheus, awops_url = running_stack
    queries = [(title, substitute(expr)) for title, expr in dashboard_queries()]
    assert len(queries) > 40
    waiting = {expr for _, expr in queries if expr not in NO_DATA_EXPECTED}

    deadline = time.monotonic() + DATA_DEADLINE_SECONDS
    while waiting and time.monotonic() < deadline:
        waiting = {expr for expr in waiting if not has_data(prometheus.query(expr))}
        if waiting:
            time.sleep(1)

    failures = []
    for title, expr in queries:
        response = prometheus.query(expr)
        if response.get("status") != "success":
            failures.append(f"{title}: {expr}: {response.get('error')}")
        elif expr not in NO_DATA_EXPECTED and not response["data"]["result"]:
            failures.append(f"{title}: {expr}: no data")
    for alert, expr in rule_expressions():
        response = prometheus.query(expr)
        if response.get("status") != "success":
            failures.append(f"rule {alert}: {response.get('error')}")
    assert not failures, "\n".join(failures)

    # The instance variable of the dashboard lists the scraped daemon.
    values = http_json(f"{prometheus.url}/api/v1/label/instance/values?match[]=awops_build_info")[
        "data"
    ]
    assert values == [awops_url.removeprefix("http://")]

    # Prometheus loaded the rules and evaluates every one of them without error.
    groups = http_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == {alert for alert, _ in rule_expressions()}
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]

    # With awops and PostgreSQL up, the alerts about them stay quiet. (Not
    # AwopsJobNoRecentSuccess: twice a 1 s schedule is shorter than a backup's run.)
    firing = {rule["name"] for rule in rules if rule["state"] != "inactive"}
    assert not firing & {"AwopsDown", "AwopsAbsent", "AwopsPgDown"}

    # What awops serves passes Prometheus' own lint.
    with urllib.request.urlopen(f"{awops_url}/metrics", timeout=10) as response:
        exposition = response.read()
    assert PROMTOOL is not None
    lint = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
    problems = (lint.stdout + lint.stderr).decode()
    assert lint.returncode == 0 and not problems.strip(), problems


def test_no_data_exemptions_are_dashboard_queries() -> None:
    expressions = {substitute(expr) for _, expr in dashboard_queries()}
    assert set(NO_DATA_EXPECTED) <= expressions
    assert all(reason.strip() for reason in NO_DATA_EXPECTED.values())


def test_dashboard_is_well_formed() -> None:
    document = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["instance"]["query"]["query"] == "label_values(awops_build_info, instance)"
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], panel["title"]
    titles = {panel["title"] for panel in document["panels"] if panel["type"] == "row"}
    assert titles == {
        "Overview",
        "PostgreSQL",
        "Backups",
        "DynamoDB",
        "RDS",
        "pgBackRest",
        "PostgreSQL: WAL, locks and maintenance",
    }
    # Every metric name used is in awops' catalogue, so a rename cannot leave a dead panel.
    defined = {spec.name for spec in catalogue.ALL}
    for name in set(re.findall(r"\b(awops_[a-z_]+)", DASHBOARD.read_text())):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in defined or base in defined, f"{name} is not in awops/"

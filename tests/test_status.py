"""``/``, ``/api/status`` and ``awops status`` against a real daemon and PostgreSQL.

Also: after a restart, the daemon reads each target's newest manifest (and verify record) at
start, so the backup series, the page and the backup-age alert need no new backup run.
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from awops import __version__
from tests.fix_awops import run_awops, wait_for
from tests.fix_pg import PgDatabase, free_port
from tests.fix_status import StatusDaemon, get, take_backup, write_config
from tests.test_metrics_security import PASSWORD, write_web_config

CONTRACT_FIELDS = {
    "job",
    "status",
    "last_run",
    "last_success",
    "next_run",
    "duration_seconds",
    "summary",
}
HEALTHY_JOBS = """
[jobs.pg-health]
schedule = "every 1s"
jitter_seconds = 0
[jobs.pg-ttl-purge]
enabled = false
[jobs.pgbackrest]
enabled = false
[jobs.rds-backup]
enabled = false
"""


def sample(body: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(body):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_api_status_follows_the_contract_and_awops_status_prints_it(
    aw_db: PgDatabase, tmp_path: Path
):
    port = free_port()
    config = write_config(tmp_path / "awops.toml", port)
    daemon = StatusDaemon(config, aw_db.awops_env(), tmp_path / "daemon.log", port)
    try:
        daemon.wait_until_serving()
        document = daemon.wait_for_runs("pg-health", "pg-ttl-purge")
        jobs = {job["job"]: job for job in document["jobs"]}
        assert set(jobs) == {"pg-health", "pg-ttl-purge", "pg-backup", "pg-backup-verify"}
        for job in document["jobs"]:
            assert set(job) >= CONTRACT_FIELDS, job
        assert document["jobs"][0]["job"] == "pg-health"  # problems first
        assert document["ok"] is False
        assert document["instance"] == "demo-host" and document["version"] == __version__
        health, purge = jobs["pg-health"], jobs["pg-ttl-purge"]
        assert health["status"] == "problem" and health["last_success"] is None
        assert "max_database_size_bytes" in health["summary"]
        assert purge["status"] == "ok" and purge["last_success"] == purge["last_run"]
        assert seconds(purge["next_run"]) > seconds(purge["last_run"])
        assert isinstance(purge["duration_seconds"], float)
        assert jobs["pg-backup"]["status"] is None and jobs["pg-backup"]["next_run"]
        assert jobs["pg-backup"]["schedule"] == "0 3 * * *"

        page_status, page = get(f"{daemon.url}/")
        assert page_status == 200 and 'id="job-pg-health" data-status="problem"' in page
        assert aw_db.cluster.password not in page
        assert aw_db.cluster.password not in json.dumps(daemon.document())

        table = run_awops("status", "--url", daemon.url)
        assert table.returncode == 1, table.stderr
        assert "1 of 4 jobs need attention" in table.stdout
        first_row = table.stdout.splitlines()[3]
        assert first_row.split()[:2] == ["pg-health", "problem"]
        as_json = run_awops("status", "--url", daemon.url, "--json")
        assert as_json.returncode == 1
        printed = json.loads(as_json.stdout)
        assert [job["job"] for job in printed["jobs"]] == [job["job"] for job in document["jobs"]]
        # Without --url: [metrics] addr of the configuration.
        configured = run_awops("status", "--config", str(config))
        assert configured.returncode == 1 and "pg-health" in configured.stdout
    finally:
        code = daemon.stop()
    assert code == 0, daemon.logs()


def test_awops_status_exits_0_when_no_job_failed(aw_db: PgDatabase, tmp_path: Path):
    port = free_port()
    config = write_config(tmp_path / "awops.toml", port, jobs=HEALTHY_JOBS)
    daemon = StatusDaemon(config, aw_db.awops_env(), tmp_path / "daemon.log", port)
    try:
        daemon.wait_until_serving()
        daemon.wait_for_runs("pg-health")
        done = run_awops("status", "--url", f"{daemon.url}/api/status")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "all 3 jobs healthy" in done.stdout
        assert "not run yet" in done.stdout  # pg-backup waits for its slot: not a failure
        page_status, page = get(f"{daemon.url}/")
        assert page_status == 200 and "all 3 jobs healthy" in page
    finally:
        daemon.stop()


def test_a_job_that_cannot_reach_its_backend_shows_as_error(tmp_path: Path):
    port = free_port()
    config = write_config(tmp_path / "awops.toml", port, jobs=HEALTHY_JOBS)
    password = "status-page-secret-7d1"
    env = {
        "DATABASE_BACKEND": "postgresql",
        "PG_DB_HOST": "127.0.0.1",
        "PG_DB_PORT": str(free_port()),  # nothing listens there
        "PG_DB_PASSWORD": password,
        "PG_POOL_TIMEOUT": "1",
    }
    daemon = StatusDaemon(config, env, tmp_path / "daemon.log", port)
    try:
        daemon.wait_until_serving()
        document = daemon.wait_for_runs("pg-health")
        assert document["jobs"][0]["job"] == "pg-health"
        assert document["jobs"][0]["status"] == "error"
        done = run_awops("status", "--url", daemon.url)
        assert done.returncode == 1 and "error" in done.stdout
        _, page = get(f"{daemon.url}/")
        assert 'data-status="error"' in page
        for shown in (page, json.dumps(document), done.stdout):
            assert password not in shown
    finally:
        daemon.stop()


def _age_backup(target: Path, backup: str, age_seconds: float) -> float:
    """Make the manifest say the dump's snapshot was taken ``age_seconds`` ago (as a backup
    taken then says); its new date."""
    manifest_path = target / f"{backup}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    created = time.time() - age_seconds
    manifest["snapshot_time"] = datetime.fromtimestamp(created, UTC).isoformat()
    manifest_path.write_text(json.dumps(manifest))
    return created


def test_a_restarted_daemon_reads_each_targets_newest_backup_at_start(
    aw_db: PgDatabase, tmp_path: Path
):
    target = tmp_path / "backups"
    broken = tmp_path / "not-a-directory"
    broken.write_text("a file where a directory should be\n")
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=f"file://{target}")
    older = take_backup(env)["details"]["backup"]
    newest = take_backup(env)["details"]
    backup = newest["backup"]
    # Two days old, as after a restart when the nightly backup stopped: the alert's case.
    _age_backup(target, older, 3 * 86400)
    created = _age_backup(target, backup, 2 * 86400)
    verified_at = time.time() - 86400
    (target / f"{backup}.verify.json").write_text(
        json.dumps(
            {
                "at": datetime.fromtimestamp(verified_at, UTC).isoformat(),
                "ok": True,
                "problems": [],
            }
        )
    )
    port = free_port()
    config = write_config(
        tmp_path / "awops.toml",
        port,
        jobs=HEALTHY_JOBS,
        extra=f'[backup]\ntargets = ["file://{target}", "file://{broken}"]\n',
    )
    daemon = StatusDaemon(config, aw_db.awops_env(), tmp_path / "daemon.log", port)
    labels = {"backend": "postgresql", "target": f"file://{target}"}
    try:
        daemon.wait_until_serving()

        def backup_series() -> float | None:
            _, body = get(f"{daemon.url}/metrics")
            return sample(body, "awops_backup_last_success_timestamp_seconds", **labels)

        last_success = wait_for(backup_series, what="the backup series after a restart")
        assert abs(last_success - created) < 0.01
        # AwopsBackupTooOld: time() - awops_backup_last_success_timestamp_seconds > 36 * 3600
        assert time.time() - last_success > 36 * 3600
        _, body = get(f"{daemon.url}/metrics")
        assert sample(body, "awops_backup_size_bytes", **labels) == newest["size_bytes"]
        verify_series = sample(body, "awops_backup_verify_last_success_timestamp_seconds", **labels)
        assert verify_series is not None and abs(verify_series - verified_at) < 0.01

        backups = {entry["target"]: entry for entry in daemon.document()["backups"]}
        good, bad = backups[f"file://{target}"], backups[f"file://{broken}"]
        assert good["id"] == backup and good["database"] == aw_db.name
        assert abs(seconds(good["created"]) - created) < 0.01
        assert good["verified"]["ok"] is True
        assert abs(seconds(good["verified"]["at"]) - verified_at) < 0.01
        assert good["last_verify"]["backup"] == backup
        assert bad["id"] is None and "Not a directory" in bad["error"]
        _, page = get(f"{daemon.url}/")
        assert backup in page and "Not a directory" in page
        assert "newest backup" in daemon.logs()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.logs()


def test_the_board_follows_real_backup_and_verify_runs(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    from awops.status import DaemonView, StatusBoard

    first, second = f"file://{tmp_path / 'a'}", f"file://{tmp_path / 'b'}"
    config = tmp_path / "awops.toml"
    config.write_text(
        f'[backup]\ntargets = ["{first}", "{second}"]\n[jobs.pg-backup-verify]\ntarget = "all"\n'
    )
    runner = in_process(aw_db.awops_env(), config)
    board = StatusBoard()
    runner.runner.observers.append(board)
    view = DaemonView([], [first, second], "test")

    backup = runner.run("pg-backup")
    assert backup.status == "ok", backup.summary
    entries = board.document(view)["backups"]
    assert [entry["id"] for entry in entries] == [backup.details["backup"]] * 2
    assert all(entry["verified"] is None for entry in entries)

    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    for entry in board.document(view)["backups"]:
        assert entry["verified"]["ok"] is True, entry
        assert entry["last_verify"]["backup"] == backup.details["backup"]

    # A dry run proves nothing and is not shown.
    runner.run("pg-backup", dry_run=True)
    assert board.document(view)["backups"][0]["id"] == backup.details["backup"]


def _fetch(url: str, cafile: Path, auth: bool) -> int:
    headers = {}
    if auth:
        token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return get(url, headers, ssl.create_default_context(cafile=str(cafile)))[0]


def test_basic_auth_and_tls_guard_the_page_and_the_api(aw_db: PgDatabase, tmp_path: Path):
    web_config = write_web_config(tmp_path)
    cafile = tmp_path / "tls.crt"
    port = free_port()
    config = write_config(
        tmp_path / "awops.toml",
        port,
        jobs=HEALTHY_JOBS,
        metrics=f'web_config_file = "{web_config}"\n',
    )
    daemon = StatusDaemon(config, aw_db.awops_env(), tmp_path / "daemon.log", port)
    base = f"https://127.0.0.1:{port}"
    try:
        wait_for(lambda: _fetch(f"{base}/healthz", cafile, auth=False) == 200, what="/healthz")
        for path in ("/", "/api/status", "/metrics"):
            assert _fetch(f"{base}{path}", cafile, auth=False) == 401, path
            assert _fetch(f"{base}{path}", cafile, auth=True) == 200, path

        def status(*args: str, password: str | None = PASSWORD) -> Any:
            env = {"AWOPS_STATUS_PASSWORD": password} if password else {}
            return run_awops("status", *args, env=env)

        wanted = status("--url", base, "--cacert", str(cafile), password=None)
        assert wanted.returncode == 2 and "asks for credentials" in wanted.stderr
        wrong = status("--url", base, "--cacert", str(cafile), "--user", "prometheus", password="x")
        assert wrong.returncode == 2 and "refused user 'prometheus'" in wrong.stderr
        untrusted = status("--url", base, "--user", "prometheus")
        assert untrusted.returncode == 2 and "--cacert" in untrusted.stderr
        for args in (
            ("--url", base, "--cacert", str(cafile)),
            ("--url", base, "--insecure"),
            ("--config", str(config), "--cacert", str(cafile)),  # https from the web config
        ):
            done = status(*args, "--user", "prometheus")
            assert done.returncode in (0, 1), (args, done.stderr)
            assert "pg-health" in done.stdout, args
            assert PASSWORD not in done.stdout + done.stderr
    finally:
        daemon.stop()


def test_awops_status_says_when_no_daemon_answers(tmp_path: Path):
    port = free_port()  # nothing listens there
    done = run_awops("status", "--url", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"no awops daemon answers at http://127.0.0.1:{port}/api/status" in done.stderr

    config = tmp_path / "awops.toml"
    config.write_text(f'[metrics]\naddr = "0.0.0.0:{port}"\n')
    done = run_awops("status", "--config", str(config))
    assert done.returncode == 1
    assert f"http://127.0.0.1:{port}/api/status" in done.stderr  # the wildcard is asked locally

    for args, env, says in (
        (("--url", "ftp://127.0.0.1:1"), {}, "expected http://HOST:PORT"),
        (("--url", f"http://127.0.0.1:{port}", "--user", "ops"), {}, "AWOPS_STATUS_PASSWORD"),
        (("--url", f"http://127.0.0.1:{port}"), {"AWOPS_STATUS_PASSWORD": "pw"}, "--user"),
    ):
        done = run_awops("status", *args, env=env)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)

    config.write_text('[metrics]\naddr = "nonsense"\n')
    done = run_awops("status", "--config", str(config))
    assert done.returncode == 2 and "metrics.addr" in done.stderr


def test_after_a_reload_the_new_runner_still_feeds_the_page(aw_db: PgDatabase, tmp_path: Path):
    port = free_port()
    config = write_config(tmp_path / "awops.toml", port, jobs=HEALTHY_JOBS)
    daemon = StatusDaemon(config, aw_db.awops_env(), tmp_path / "daemon.log", port)
    try:
        daemon.wait_until_serving()
        daemon.wait_for_runs("pg-health")
        write_config(
            config,
            port,
            jobs=HEALTHY_JOBS.replace(
                "[jobs.pg-ttl-purge]\nenabled = false",
                '[jobs.pg-ttl-purge]\nschedule = "every 1s"\njitter_seconds = 0',
            ),
        )
        daemon.process.send_signal(signal.SIGHUP)
        document = daemon.wait_for_runs("pg-health", "pg-ttl-purge")
        purge = next(job for job in document["jobs"] if job["job"] == "pg-ttl-purge")
        assert purge["status"] == "ok" and purge["schedule"] == "every 1s"
        assert "configuration reloaded" in daemon.logs()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.logs()

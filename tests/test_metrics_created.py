"""No ``*_created`` series: each repeated its counter's help on /metrics and in every push."""

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from awops.metrics import Metrics
from awops.result import JobResult, Status
from tests.fix_awops import DaemonProcess, run_awops, wait_for
from tests.fix_pg import PgDatabase, free_port
from tests.test_daemon import get, sample, write_config
from tests.test_push import PUSHGATEWAY, Pushgateway, pushgateway  # noqa: F401 - a fixture


def test_metrics_expose_no_created_series() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.declare_job("pg-health")
    metrics.record_run(JobResult("pg-health", Status.OK, "fine", {}, 0.2), 1000.0)
    metrics.counter("awops_pg_ttl_purged_rows_total", "Rows deleted", ["table"]).labels(
        table="attributes"
    ).inc(3)
    text = generate_latest(metrics.registry).decode()
    assert "awops_job_runs_total" in text and "awops_job_duration_seconds_count" in text
    assert "_created" not in text


def test_a_real_scrape_has_no_created_series(aw_db: PgDatabase, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "awops.toml"
    write_config(config, port)
    daemon = DaemonProcess(config, aw_db.awops_env(), tmp_path / "daemon.log")
    try:
        base = f"http://127.0.0.1:{port}"

        def scraped() -> str:
            body = get(f"{base}/metrics")[1]
            return (
                body if sample(body, "awops_job_runs_total", job="pg-health", status="ok") else ""
            )

        body = wait_for(scraped, what="a pg-health run on /metrics")
    finally:
        assert daemon.stop() == 0
    assert "awops_job_duration_seconds_bucket" in body
    assert [line for line in body.splitlines() if "_created" in line] == []


@pytest.mark.skipif(PUSHGATEWAY is None, reason="prometheus-pushgateway missing")
def test_a_push_has_no_created_series(aw_db: PgDatabase, pushgateway: Pushgateway) -> None:  # noqa: F811
    env = aw_db.awops_env(AWOPS_PUSHGATEWAY_URL=pushgateway.url, AWOPS_DAEMON_INSTANCE="cron-1")
    result = run_awops("run-once", "pg-health", env=env)
    assert result.returncode == 0, result.stderr
    names = {name for name, _labels in pushgateway.samples()}
    assert "awops_job_runs_total" in names
    assert [name for name in names if name.endswith("_created")] == []

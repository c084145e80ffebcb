"""psycopg_pool's counters on /metrics: read at scrape time, summed over the pools a process had."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from awops.daemon import Daemon
from awops.registry import builtin_registry
from awops.result import Status
from tests import test_push
from tests.fix_awops import clean_environ, daemon_in_thread, run_awops, wait_for
from tests.fix_pg import PgDatabase, free_port

pushgateway = test_push.pushgateway


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name.startswith("awops_pg_pool_") and not sample.labels
    }


def _config(port: int, pool_max_size: int) -> str:
    # pg-health is run by the test, not by the scheduler: its schedule never comes round.
    return (
        f'[metrics]\naddr = "127.0.0.1:{port}"\n'
        f"[postgresql]\npool_max_size = {pool_max_size}\n"
        '[jobs.pg-health]\nschedule = "every 24h"\n'
    )


def _pool_traffic(daemon: Daemon, requests: int) -> None:
    for _ in range(requests):
        with daemon.resources.pg.connection() as conn:
            conn.execute("SELECT 1")


def test_pool_counters_keep_counting_across_a_reload_that_replaces_the_pool(
    aw_db: PgDatabase, tmp_path: Path
):
    port = free_port()
    config_path = tmp_path / "awops.toml"
    config_path.write_text(_config(port, pool_max_size=4))
    env = clean_environ(aw_db.awops_env())
    with daemon_in_thread(config_path, builtin_registry(), env) as (daemon, _):
        wait_for(lambda: daemon.readiness.reached(), what="PostgreSQL reached")
        _pool_traffic(daemon, 20)
        assert daemon.runner.run("pg-health").status is Status.OK
        before = _scrape(port)
        assert before["awops_pg_pool_requests_total"] >= 20
        assert before["awops_pg_pool_max_connections"] == 4
        old_pg = daemon.resources.pg

        config_path.write_text(_config(port, pool_max_size=5))
        daemon.request_reload()
        wait_for(lambda: daemon.config.postgresql.pool_max_size == 5, what="the reload")
        assert daemon.resources.pg is not old_pg
        _pool_traffic(daemon, 3)
        assert daemon.runner.run("pg-health").status is Status.OK
        during = _scrape(port)
        # The replaced pool is closed once its runs are done; its counts stay in the totals.
        wait_for(lambda: old_pg.pool_stats() == {}, what="the replaced pool closed")
        after = _scrape(port)

    counters = sorted(name for name in before if name.endswith("_total"))
    assert "awops_pg_pool_requests_wait_seconds_total" in counters
    for name in counters:
        assert during[name] >= before[name], name
        assert after[name] >= during[name], name
    # The new pool's 3 requests and pg-health's own come on top of the old pool's.
    assert during["awops_pg_pool_requests_total"] >= before["awops_pg_pool_requests_total"] + 3
    assert after["awops_pg_pool_max_connections"] == 5


@test_push.pytestmark
def test_run_once_pushes_the_pool_counters(
    aw_db: PgDatabase, pushgateway: test_push.Pushgateway
) -> None:
    env = aw_db.awops_env(AWOPS_PUSHGATEWAY_URL=pushgateway.url, AWOPS_DAEMON_INSTANCE="cron-1")
    result = run_awops("run-once", "pg-health", env=env)
    assert result.returncode == 0, result.stderr
    shared = {"job": "awops", "instance": "cron-1"}
    # Read from the pool closed at the end of the run: its counts stay in the totals.
    assert (pushgateway.value("awops_pg_pool_requests_total", **shared) or 0) >= 1
    assert pushgateway.value("awops_pg_pool_max_connections", **shared) == 10

"""The status page in a real browser (Debian's headless Chromium) against a real daemon.

Chromium loads ``/`` from an ``awops run`` subprocess on loopback and its DOM is read back:
each job's status cell, problems first, the newest backup; after another run the page shows
the new last-run time. A screenshot is kept under pytest's tmp_path as a test artefact.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from awops.metrics.http import MetricsServer
from awops.result import JobResult, Status
from awops.status import DaemonView, PlannedJob, StatusBoard, status_routes
from tests.fix_awops import wait_for
from tests.fix_browser import Chromium, parse_status_page
from tests.fix_pg import PgDatabase, free_port
from tests.fix_status import StatusDaemon, take_backup, write_config


def test_the_page_shows_each_jobs_status_and_updates_after_a_run(
    chromium: Chromium, aw_db: PgDatabase, tmp_path: Path
):
    target = tmp_path / "backups"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=f"file://{target}")
    backup = take_backup(env)["details"]["backup"]
    port = free_port()
    config = write_config(tmp_path / "awops.toml", port)
    daemon = StatusDaemon(config, env, tmp_path / "daemon.log", port)
    try:
        daemon.wait_until_serving()
        daemon.wait_for_runs("pg-health", "pg-ttl-purge")

        first = parse_status_page(chromium.dump_dom(f"{daemon.url}/"))
        expected = {job["job"]: job["status"] or "not run yet" for job in daemon.document()["jobs"]}
        shown = {job.name: job.status_text for job in first.jobs}
        assert shown == expected
        assert shown["pg-health"] == "problem"
        assert shown["pg-ttl-purge"] == "ok"
        assert shown["pg-backup"] == "not run yet"
        # Problems first.
        assert first.jobs[0].name == "pg-health"
        assert "max_database_size_bytes" in first.jobs[0].summary
        # The backup taken before the daemon started, read from its manifest at start.
        assert backup in first.backups[f"file://{target}"]
        assert first.meta["viewport"].startswith("width=device-width")
        assert int(first.meta["refresh"]) > 0
        assert "script" not in first.tags

        purge_before = next(job for job in first.jobs if job.name == "pg-ttl-purge").last_run
        assert purge_before

        def purged_again() -> bool:
            return bool(daemon.job("pg-ttl-purge")["last_run"] != purge_before)

        wait_for(purged_again, timeout=60, what="another pg-ttl-purge run")
        second = parse_status_page(chromium.dump_dom(f"{daemon.url}/"))
        purge_after = next(job for job in second.jobs if job.name == "pg-ttl-purge")
        assert purge_after.last_run > purge_before
        assert purge_after.status_text == "ok"

        shot = chromium.screenshot(f"{daemon.url}/", tmp_path / "artefacts" / "status-page.png")
        phone = chromium.screenshot(
            f"{daemon.url}/", tmp_path / "artefacts" / "status-page-phone.png", 390, 844
        )
        assert shot.stat().st_size > 10_000 and phone.stat().st_size > 5_000
        assert aw_db.cluster.password not in chromium.dump_dom(f"{daemon.url}/")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.logs()


def test_markup_in_a_summary_stays_text_in_the_browser(chromium: Chromium):
    """A summary quotes what a backend said; the browser must show it, never run it."""

    hostile = '<img src="/x" onerror="document.title=1"><script>document.title=2</script>&amp;'
    board = StatusBoard()
    board.run_finished(JobResult("pg-health", Status.ERROR, hostile, {}, 0.5), dry_run=False)
    view = DaemonView([PlannedJob("pg-health", "every 60s", None)], [], '"><b>host</b>')
    server = MetricsServer(
        f"127.0.0.1:{free_port()}", CollectorRegistry(), lambda: (True, {}), lambda: (True, {})
    )
    for path, handler in status_routes(board, lambda: view):
        server.route(path, handler, auth=True)
    server.start()
    try:
        dom = chromium.dump_dom(f"http://127.0.0.1:{server.port}/")
    finally:
        server.stop()
    page = parse_status_page(dom)
    assert page.jobs[0].summary == hostile
    assert page.jobs[0].status_text == "error"
    assert "img" not in page.tags and "script" not in page.tags and "b" not in page.tags
    assert "<title>awops: 1 failing" in dom

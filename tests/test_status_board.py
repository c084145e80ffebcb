"""The status board, its page and the client's URL rules, without a daemon.

The board and the page are plain objects fed with results; the verify records are read from a
real local backup target.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from awops.backup.targets import open_target
from awops.result import JobResult, Status
from awops.status import DaemonView, PlannedJob, StatusBoard, render_page, target_label
from awops.status.backups import read_verify_record
from awops.status.board import NewestBackup, Verification, iso_z
from awops.status.client import StatusError, status_url
from awops.status.routes import refresh_seconds


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def result(job: str, status: Status, summary: str = "", **details: object) -> JobResult:
    return JobResult(job, status, summary, dict(details), 1.25)


def view(*jobs: str, targets: tuple[str, ...] = ()) -> DaemonView:
    return DaemonView([PlannedJob(job, "every 60s", None) for job in jobs], targets, "host-1")


def test_problems_come_first_then_jobs_not_run_yet():
    board = StatusBoard(Clock())
    for job, status in (
        ("a-ok", Status.OK),
        ("b-skipped", Status.SKIPPED),
        ("c-problem", Status.PROBLEM),
        ("d-error", Status.ERROR),
    ):
        board.run_finished(result(job, status), dry_run=False)
    document = board.document(view("a-ok", "b-skipped", "c-problem", "d-error", "e-new"))
    order = [job["job"] for job in document["jobs"]]
    assert order == ["d-error", "c-problem", "e-new", "b-skipped", "a-ok"]
    assert document["ok"] is False
    assert board.document(view("a-ok", "b-skipped", "e-new"))["ok"] is True


def test_a_run_sets_last_run_and_only_ok_sets_last_success():
    clock = Clock()
    board = StatusBoard(clock)
    board.run_finished(result("pg-health", Status.OK, "fine"), dry_run=False)
    clock.now += 60
    board.run_started("pg-health", "run-2", dry_run=False)
    running = board.document(view("pg-health"))["jobs"][0]
    assert running["running_since"] == iso_z(clock.now)
    clock.now += 5
    board.run_finished(result("pg-health", Status.PROBLEM, "slow"), dry_run=False)
    job = board.document(view("pg-health"))["jobs"][0]
    assert job["status"] == "problem" and job["summary"] == "slow"
    assert job["last_run"] == iso_z(clock.now)
    assert job["last_success"] == iso_z(clock.now - 65)
    assert job["running_since"] is None and job["duration_seconds"] == 1.25
    # A dry run changes nothing shown.
    board.run_finished(result("pg-health", Status.OK, "dry"), dry_run=True)
    assert board.document(view("pg-health"))["jobs"][0]["summary"] == "slow"


def test_only_planned_jobs_and_configured_targets_are_shown():
    board = StatusBoard(Clock())
    board.run_finished(result("gone-after-reload", Status.ERROR), dry_run=False)
    board.offer_backup("postgresql", "file:///old", NewestBackup("db-1", 1.0, 10))
    document = board.document(view("pg-health", targets=("file:///new",)))
    assert [job["job"] for job in document["jobs"]] == ["pg-health"]
    assert document["ok"] is True
    assert [entry["target"] for entry in document["backups"]] == ["file:///new"]
    assert document["backups"][0]["id"] is None


def test_a_newer_backup_or_verify_is_never_replaced_by_an_older_one():
    board = StatusBoard(Clock())
    target = "file:///b"
    assert board.offer_backup("postgresql", target, NewestBackup("db-2", 200.0, 20), "db")
    # The start-up scan finishing after a run read an older backup: the run's stays.
    assert not board.offer_backup("postgresql", target, NewestBackup("db-1", 100.0, 10))
    assert board.offer_verification("postgresql", target, Verification("db-2", 300.0, False))
    assert not board.offer_verification("postgresql", target, Verification("db-1", 250.0, True))
    entry = board.document(view(targets=(target,)))["backups"][0]
    assert entry["id"] == "db-2" and entry["size_bytes"] == 20 and entry["database"] == "db"
    assert entry["verified"] == {"at": iso_z(300.0), "ok": False}
    assert entry["last_verify"] == {"backup": "db-2", "at": iso_z(300.0), "ok": False}


def test_verify_results_of_one_target_and_of_all_targets_are_recorded():
    clock = Clock()
    board = StatusBoard(clock)
    backup = {"backup": "db-20261205T030000.000Z", "created": "2026-12-05T03:00:00+00:00"}
    board.run_finished(
        result("pg-backup", Status.OK, targets=["file:///a", "file:///b"], size_bytes=5, **backup),
        dry_run=False,
    )
    board.run_finished(
        result("pg-backup-verify", Status.OK, target="file:///a", **backup), dry_run=False
    )
    clock.now += 10
    per_target = {
        "file:///a": {"status": "ok", **backup},
        "file:///b": {"status": "problem", **backup},
    }
    board.run_finished(
        result("pg-backup-verify", Status.PROBLEM, targets=per_target), dry_run=False
    )
    entries = board.document(view(targets=("file:///a", "file:///b")))["backups"]
    assert [entry["verified"] for entry in entries] == [
        {"at": iso_z(clock.now), "ok": True},
        {"at": iso_z(clock.now), "ok": False},
    ]
    assert entries[0]["id"] == backup["backup"] and entries[0]["size_bytes"] == 5
    # An error is no verdict on the backup.
    clock.now += 10
    board.run_finished(
        result("pg-backup-verify", Status.ERROR, target="file:///a", **backup), dry_run=False
    )
    assert board.document(view(targets=("file:///a",)))["backups"][0]["verified"]["ok"] is True


def test_the_page_escapes_every_string_and_loads_nothing_from_elsewhere():
    board = StatusBoard(Clock())
    hostile = "<script>alert('x')</script> & \"quoted\""
    board.run_finished(result("pg-health", Status.ERROR, hostile), dry_run=False)
    board.target_error("postgresql", "file:///<b>", "cannot read <dir>")
    document = board.document(
        DaemonView([PlannedJob("pg-health", "<every>", None)], ["file:///<b>"], "<host>")
    )
    page = render_page(document, Clock()())
    assert "<script" not in page and "<b>" not in page and "<host>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert "cannot read &lt;dir&gt;" in page and "&lt;every&gt;" in page
    # Self-contained: no external asset, links only to the daemon's own paths.
    assert not re.search(r"\b(src|srcset)=", page)
    assert sorted(re.findall(r'href="([^"]*)"', page)) == sorted(
        ["/metrics", "/healthz", "/readyz", "/api/status"]
    )
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<meta http-equiv="refresh" content="10">' in page
    assert "prefers-color-scheme: dark" in page and "overflow-x: auto" in page
    assert 'http-equiv="refresh"' not in render_page(document, 0.0, refresh_seconds=0)


@pytest.mark.parametrize(
    ("query", "seconds"),
    [("", 10), ("refresh=30", 30), ("refresh=0", 0), ("refresh=1", 2), ("refresh=x", 10)],
)
def test_the_refresh_interval_comes_from_the_query_within_bounds(query: str, seconds: int):
    assert refresh_seconds(query) == seconds
    assert refresh_seconds("refresh=99999") == 3600


def test_verify_records_are_read_without_trusting_them(tmp_path: Path):
    target = open_target(f"file://{tmp_path}", None)
    cases = {
        "good": json.dumps({"at": "2026-12-06T05:00:41+00:00", "ok": True, "problems": []}),
        "failed": json.dumps({"at": "2026-12-06T05:00:41Z", "ok": False}),
        "not-json": "{",
        "a-list": "[]",
        "no-offset": json.dumps({"at": "2026-12-06T05:00:41", "ok": True}),
        "ok-a-string": json.dumps({"at": "2026-12-06T05:00:41Z", "ok": "yes"}),
    }
    for name, text in cases.items():
        (tmp_path / f"{name}.verify.json").write_text(text)
    read = {name: read_verify_record(target, name, f"{name}.verify.json") for name in cases}
    assert read["good"] == Verification("good", 1796533241.0, True)
    assert read["failed"] == Verification("failed", 1796533241.0, False)
    assert [name for name, found in read.items() if found is None] == [
        "not-json",
        "a-list",
        "no-offset",
        "ok-a-string",
    ]


def test_target_labels_match_what_the_backup_jobs_label():
    assert target_label("/var/backups/awops/") == "file:///var/backups/awops"
    assert target_label("file:///var/backups//awops") == "file:///var/backups/awops"
    assert target_label("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert open_target("/var/backups/awops/", None).url == target_label("/var/backups/awops/")


@pytest.mark.parametrize(
    ("given", "asked"),
    [
        ("http://127.0.0.1:9647", "http://127.0.0.1:9647/api/status"),
        ("http://127.0.0.1:9647/", "http://127.0.0.1:9647/api/status"),
        ("https://ops.example/awops", "https://ops.example/awops/api/status"),
        ("http://[::1]:9647/api/status", "http://[::1]:9647/api/status"),
    ],
)
def test_status_url(given: str, asked: str):
    assert status_url(given) == asked


def test_a_url_that_names_no_daemon_is_a_usage_error():
    with pytest.raises(StatusError) as raised:
        status_url("127.0.0.1:9647")
    assert raised.value.usage

"""The ``pgbackrest`` job against Debian's real pgBackRest and throwaway clusters that archive
through it: a healthy stanza, a broken ``archive_command``, a stale backup, a repository in
error, a hole in the WAL archive."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from awops.result import Status
from tests.fix_awops import run_awops
from tests.fix_pgbackrest import PgBackRestStanza, needs_pgbackrest

pytestmark = [needs_pgbackrest, pytest.mark.slow]


def newest_backup_stop(stanza: PgBackRestStanza) -> float:
    info = json.loads(stanza.pgbackrest("--output=json", "info").stdout)
    return max(float(b["timestamp"]["stop"]) for b in info[0]["backup"])


def test_healthy_stanza_is_ok_with_its_metrics(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    runner = in_process(pgbackrest_stanza.awops_env())
    result = runner.run("pgbackrest")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"stanza {pgbackrest_stanza.name} ok: repo1 newest full")
    assert "pgbackrest check passed" in result.summary
    repo = result.details["repos"]["repo1"]
    assert repo["ok"] is True
    assert repo["backups"]["full"]["count"] == 1
    assert repo["archive"]["checked"] is True
    assert repo["archive"]["missing_segments"] == 0
    assert repo["archive"]["segment_bytes"] == 16 * 1024 * 1024
    assert result.details["check"] == {"ran": True, "ok": True}

    stanza = {"stanza": pgbackrest_stanza.name}
    labels = {**stanza, "repo": "repo1"}
    assert runner.value("awops_pgbackrest_stanza_ok", **stanza) == 1
    assert runner.value("awops_pgbackrest_stanza_status_code", **stanza) == 0
    assert runner.value("awops_pgbackrest_repo_ok", **labels) == 1
    stop = newest_backup_stop(pgbackrest_stanza)
    assert (
        runner.value("awops_pgbackrest_last_backup_timestamp_seconds", **labels, type="full")
        == stop
    )
    assert runner.value("awops_pgbackrest_backup_size_bytes", **labels, type="full") > 1_000_000
    assert runner.value("awops_pgbackrest_backup_repository_bytes", **labels, type="full") > 0
    assert runner.value("awops_pgbackrest_backups", **labels, type="full") == 1
    assert runner.value("awops_pgbackrest_backups", **labels, type="incr") == 0
    # No differential or incremental backup: no series pretending one exists.
    assert (
        runner.value("awops_pgbackrest_last_backup_timestamp_seconds", **labels, type="diff")
        is None
    )
    assert runner.value("awops_pgbackrest_archive_gap", **labels) == 0
    assert runner.value("awops_pgbackrest_archive_segments_since_backup", **labels) >= 1
    assert runner.value("awops_pgbackrest_archive_newest_segment_timestamp_seconds", **labels) > 0
    assert runner.value("awops_pgbackrest_check_ok", **stanza) == 1
    assert runner.value("awops_pgbackrest_check_last_success_timestamp_seconds", **stanza) > 0
    # The shared backup series, which AwopsBackupTooOld watches.
    target = {"backend": "pgbackrest", "target": f"{pgbackrest_stanza.name}/repo1"}
    assert runner.value("awops_backup_last_success_timestamp_seconds", **target) == stop
    assert runner.value("awops_backup_size_bytes", **target) > 0

    # The weekly check ran at the first run; the next run only reads info.
    again = runner.run("pgbackrest")
    assert again.status is Status.OK
    assert again.details["check"]["ran"] is False
    assert again.details["check"]["next_due"] > again.details["check"]["last_passed"]


def test_stale_backup_is_a_problem(pgbackrest_stanza: PgBackRestStanza, in_process: Any) -> None:
    stop = newest_backup_stop(pgbackrest_stanza)
    while time.time() < stop + 2:
        time.sleep(0.2)
    env = pgbackrest_stanza.awops_env(
        AWOPS_JOB_PGBACKREST_MAX_BACKUP_AGE_SECONDS="1", AWOPS_JOB_PGBACKREST_CHECK_SCHEDULE=""
    )
    result = in_process(env).run("pgbackrest")
    assert result.status is Status.PROBLEM
    assert "repo1 newest backup" in result.summary
    assert "(max_backup_age_seconds 1)" in result.summary
    assert result.details["check"] == {"ran": False, "reason": "check_schedule is empty"}


def test_stale_full_backup_is_a_problem(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    stop = newest_backup_stop(pgbackrest_stanza)
    while time.time() < stop + 2:
        time.sleep(0.2)
    env = pgbackrest_stanza.awops_env(
        AWOPS_JOB_PGBACKREST_MAX_FULL_BACKUP_AGE_SECONDS="1",
        AWOPS_JOB_PGBACKREST_CHECK_SCHEDULE="",
    )
    result = in_process(env).run("pgbackrest")
    assert result.status is Status.PROBLEM
    assert "newest full backup" in result.summary
    assert "(max_full_backup_age_seconds 1)" in result.summary


def test_a_repository_in_error_is_a_problem(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any, tmp_path: Path
) -> None:
    # A second repository where the stanza was never created.
    empty = pgbackrest_stanza.cluster.base / "empty-repo"
    empty.mkdir(exist_ok=True)
    config = pgbackrest_stanza.write_config(
        pgbackrest_stanza.home / "two-repos.conf", repo2_path=str(empty)
    )
    env = pgbackrest_stanza.awops_env(
        AWOPS_JOB_PGBACKREST_CONFIG=str(config), AWOPS_JOB_PGBACKREST_CHECK_SCHEDULE=""
    )
    runner = in_process(env)
    result = runner.run("pgbackrest")
    assert result.status is Status.PROBLEM
    assert "repo2: missing stanza path" in result.summary
    assert "repo1" not in result.summary
    stanza = {"stanza": pgbackrest_stanza.name}
    assert runner.value("awops_pgbackrest_stanza_ok", **stanza) == 0
    assert runner.value("awops_pgbackrest_repo_ok", **stanza, repo="repo1") == 1
    assert runner.value("awops_pgbackrest_repo_ok", **stanza, repo="repo2") == 0

    # repo = 1 looks at the healthy repository only.
    env["AWOPS_JOB_PGBACKREST_REPO"] = "1"
    only_first = in_process(env).run("pgbackrest")
    assert only_first.status is Status.OK, only_first.summary
    assert list(only_first.details["repos"]) == ["repo1"]


def test_broken_archive_command_fails_the_check_until_it_is_fixed(
    pgbackrest_stanza_factory: Any, in_process: Any
) -> None:
    stanza: PgBackRestStanza = pgbackrest_stanza_factory()
    # archive_command still names pgbackrest, but a repository where the stanza is not.
    stanza.set_archive_command(
        stanza.archive_command(f"--repo1-path={stanza.cluster.base / 'wrong-repo'}")
    )
    env = stanza.awops_env(AWOPS_JOB_PGBACKREST_ARCHIVE_TIMEOUT_SECONDS="3")
    runner = in_process(env)
    result = runner.run("pgbackrest")
    assert result.status is Status.PROBLEM
    assert "pgbackrest check failed" in result.summary
    assert "was not archived before the 3000ms timeout" in result.summary
    assert result.details["check"]["ran"] is True and result.details["check"]["ok"] is False
    # info alone sees nothing wrong: only the check proves archiving.
    assert result.details["repos"]["repo1"]["ok"] is True
    assert runner.value("awops_pgbackrest_check_ok", stanza=stanza.name) == 0
    assert (
        runner.value("awops_pgbackrest_check_last_success_timestamp_seconds", stanza=stanza.name)
        is None
    )

    # A failed check is retried at every run, not a week later.
    stanza.set_archive_command(stanza.archive_command())
    fixed = runner.run("pgbackrest")
    assert fixed.status is Status.OK, fixed.summary
    assert fixed.details["check"] == {"ran": True, "ok": True}
    assert runner.value("awops_pgbackrest_check_ok", stanza=stanza.name) == 1


def test_a_hole_in_the_archive_after_the_newest_backup_is_a_problem(
    pgbackrest_stanza_factory: Any, in_process: Any
) -> None:
    stanza: PgBackRestStanza = pgbackrest_stanza_factory()
    stanza.switch_wal(3)
    stanza.wait_archived()
    segments = sorted(
        path
        for path in (stanza.repo / "archive" / stanza.name).rglob("*.gz")
        if len(path.name.split("-")[0]) == 24
    )
    assert len(segments) >= 4
    removed = segments[-3]
    removed.unlink()
    env = stanza.awops_env(AWOPS_JOB_PGBACKREST_CHECK_SCHEDULE="")
    runner = in_process(env)
    result = runner.run("pgbackrest")
    assert result.status is Status.PROBLEM
    name = removed.name.split("-")[0]
    assert "archive has a gap after backup" in result.summary
    assert f"1 WAL segment(s) missing ({name})" in result.summary
    labels = {"stanza": stanza.name, "repo": "repo1"}
    assert runner.value("awops_pgbackrest_archive_gap", **labels) == 1
    assert runner.value("awops_pgbackrest_archive_missing_segments", **labels) == 1


def test_without_a_stanza_the_job_is_skipped_and_says_how_to_turn_it_on(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    env = pgbackrest_stanza.awops_env()
    del env["AWOPS_JOB_PGBACKREST_STANZA"]
    result = in_process(env).run("pgbackrest")
    assert result.status is Status.SKIPPED
    assert "set [jobs.pgbackrest] stanza" in result.summary


def test_an_unreadable_configuration_is_an_error(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    runner = in_process(pgbackrest_stanza.awops_env(AWOPS_JOB_PGBACKREST_CHECK_SCHEDULE=""))
    assert runner.run("pgbackrest").status is Status.OK
    assert runner.value("awops_pgbackrest_stanza_ok", stanza=pgbackrest_stanza.name) == 1
    runner.config.jobs["pgbackrest"].options.config = "/nonexistent/pgbackrest.conf"
    result = runner.run("pgbackrest")
    assert result.status is Status.ERROR
    assert "pgbackrest info failed (exit 55)" in result.summary
    assert "/nonexistent/pgbackrest.conf" in result.summary
    # The last good answer does not keep showing.
    assert runner.value("awops_pgbackrest_stanza_ok", stanza=pgbackrest_stanza.name) == 0


def test_a_missing_program_is_an_error_naming_the_option(
    pgbackrest_stanza: PgBackRestStanza, in_process: Any
) -> None:
    env = pgbackrest_stanza.awops_env(AWOPS_JOB_PGBACKREST_PGBACKREST="/nonexistent/pgbackrest")
    result = in_process(env).run("pgbackrest")
    assert result.status is Status.ERROR
    assert "set jobs.pgbackrest.pgbackrest to its path" in result.summary


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AWOPS_JOB_PGBACKREST_STANZA", "bad stanza", "a pgBackRest stanza name"),
        ("AWOPS_JOB_PGBACKREST_CONFIG", "relative.conf", "an absolute path"),
        ("AWOPS_JOB_PGBACKREST_CHECK_SCHEDULE", "sometimes", "or a cron expression"),
        ("AWOPS_JOB_PGBACKREST_MAX_BACKUP_AGE_SECONDS", "0", "at least 1"),
    ],
)
def test_bad_options_are_configuration_errors(variable: str, value: str, expected: str) -> None:
    result = run_awops(
        "run-once", "pgbackrest", env={"DATABASE_BACKEND": "postgresql", variable: value}
    )
    assert result.returncode == 2, result.stderr
    assert f"environment {variable}" in result.stderr
    assert expected in result.stderr


def test_a_stanza_without_backups_is_a_problem_for_both_jobs(
    pgbackrest_stanza_factory: Any, in_process: Any
) -> None:
    stanza: PgBackRestStanza = pgbackrest_stanza_factory(backup=False)
    env = stanza.awops_env(
        AWOPS_JOB_PGBACKREST_CHECK_SCHEDULE="",
        AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_ENABLED="true",
        AWOPS_JOB_PGBACKREST_RESTORE_VERIFY_WORK_DIR=str(stanza.work_dir()),
    )
    runner = in_process(env)
    result = runner.run("pgbackrest")
    assert result.status is Status.PROBLEM
    assert "no valid backups" in result.summary
    assert runner.value("awops_pgbackrest_stanza_ok", stanza=stanza.name) == 0
    verify = runner.run("pgbackrest-restore-verify")
    assert verify.status is Status.PROBLEM
    assert verify.summary == f"no backup of stanza {stanza.name} in any repository"


def test_run_once_reports_a_healthy_stanza_with_exit_code_0(
    pgbackrest_stanza: PgBackRestStanza,
) -> None:
    result = run_awops("run-once", "pgbackrest", "--json", env=pgbackrest_stanza.awops_env())
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "ok"
    assert job["details"]["check"] == {"ran": True, "ok": True}

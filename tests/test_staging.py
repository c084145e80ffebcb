"""Staging directories: named after their process; those of a dead process removed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from awops.staging import remove_stale, staging_directory


def started(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])


def test_the_next_staging_directory_removes_only_those_whose_process_is_gone(tmp_path: Path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        me = os.getpid()
        dead = tmp_path / f"awops-verify-{gone.pid}.12345-abc_1"
        reused = tmp_path / f"awops-verify-{me}.{started(me) + 1}-def2"  # the pid, reused
        running = tmp_path / f"awops-verify-{sleeper.pid}.{started(sleeper.pid)}-ghi3"
        other_prefix = tmp_path / f"awops-check-{gone.pid}.12345-jkl4"
        not_ours = tmp_path / "awops-verify-notes"
        for path in (dead, reused, running, other_prefix, not_ours):
            path.mkdir()
            (path / "actingweb.dump.restore").write_bytes(b"plain text of a dump")
        link = tmp_path / f"awops-verify-{gone.pid}.1-link"
        link.symlink_to(running)

        with staging_directory("awops-verify-", tmp_path) as staging:
            made = Path(staging)
            assert made.is_dir() and made.parent == tmp_path
            assert made.name.startswith(f"awops-verify-{me}.{started(me)}-")
            left = sorted(p.name for p in tmp_path.iterdir())
        assert not made.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert left == sorted([running.name, other_prefix.name, not_ours.name, link.name, made.name])
    assert (running / "actingweb.dump.restore").exists()


def test_a_staging_directory_of_this_process_is_left_to_it(tmp_path: Path):
    with staging_directory("awops-restore-", str(tmp_path)) as first:
        assert remove_stale(tmp_path, "awops-restore-") == []
        with staging_directory("awops-restore-", tmp_path) as second:
            assert Path(first).is_dir() and Path(second).is_dir()


def test_a_missing_work_directory_is_left_to_the_caller_to_report(tmp_path: Path):
    assert remove_stale(tmp_path / "missing", "awops-verify-") == []

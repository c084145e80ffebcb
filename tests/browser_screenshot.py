"""Regenerate the README's picture of the status page: ``python -m tests.browser_screenshot``.

The same scenario and browser code as ``tests/test_status_browser.py``: a throwaway
PostgreSQL with ActingWeb's schema, a backup taken, a real ``awops run`` that verifies it and
has one job finding a problem, and Debian's headless Chromium taking the screenshot on loopback.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from scripts.demo import load_dataset
from tests.fix_browser import Chromium, find_chromium
from tests.fix_pg import PgCluster, free_port
from tests.fix_schema import create_actingweb_schema
from tests.fix_status import SCENARIO_JOBS, StatusDaemon, take_backup, write_config

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "status-page.png"
# The daemon verifies the backup itself, soon after it starts, so the picture shows a result.
VERIFY_SOON = '[jobs.pg-backup-verify]\nschedule = "every 20s"\njitter_seconds = 0\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=640)
    args = parser.parse_args(argv)
    binary = find_chromium()
    if binary is None:
        print("chromium is not installed: run scripts/system-deps.sh as root", file=sys.stderr)
        return 1
    cluster = PgCluster().init().start()
    try:
        with tempfile.TemporaryDirectory(prefix="awops-") as scratch:
            folder = Path(scratch)
            db = cluster.create_database("actingweb")
            with db.connect(autocommit=True) as conn:
                create_actingweb_schema(conn)
                load_dataset(conn)
            env = db.awops_env(AWOPS_BACKUP_TARGET=f"file://{folder / 'backups'}")
            take_backup(env, "pg-backup")
            port = free_port()
            config = write_config(folder / "awops.toml", port, SCENARIO_JOBS + VERIFY_SOON)
            daemon = StatusDaemon(config, env, folder / "daemon.log", port)
            try:
                daemon.wait_until_serving()
                daemon.wait_for_runs("pg-health", "pg-ttl-purge", "pg-backup-verify")
                shot = Chromium(binary).screenshot(
                    f"{daemon.url}/", args.output, args.width, args.height
                )
            finally:
                daemon.stop()
    finally:
        cluster.destroy()
    print(f"wrote {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

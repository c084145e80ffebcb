"""A real ``awops run`` to look at: the status page's scenario, shared by its tests and by
``python -m tests.browser_screenshot`` (which makes the README's picture)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fix_awops import DaemonProcess, run_awops, wait_for

# pg-health finds a problem (any database is larger than one byte), the purge is fine, and
# pg-backup waits for its nightly slot: one row of each kind, problems first.
SCENARIO_JOBS = """
[jobs.pg-health]
schedule = "every 2s"
jitter_seconds = 0
max_database_size_bytes = 1
[jobs.pg-ttl-purge]
schedule = "every 3s"
jitter_seconds = 0
[jobs.pgbackrest]
enabled = false
[jobs.rds-backup]
enabled = false
"""


def write_config(
    path: Path, port: int, jobs: str = SCENARIO_JOBS, extra: str = "", metrics: str = ""
) -> Path:
    """``extra``: more sections; ``metrics``: more lines of ``[metrics]``."""
    path.write_text(
        f'[metrics]\naddr = "127.0.0.1:{port}"\n{metrics}'
        '[daemon]\nshutdown_timeout_seconds = 10\ninstance = "demo-host"\n' + extra + jobs
    )
    return path


def take_backup(env: dict[str, str], job: str = "pg-backup") -> dict[str, Any]:
    """``awops run-once <job> --json``: its job entry; fails unless it is ok."""
    done = run_awops("run-once", job, "--json", env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    entry: dict[str, Any] = json.loads(done.stdout)["jobs"][0]
    return entry


def get(url: str, headers: dict[str, str] | None = None, context: Any = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet
        return 0, ""


class StatusDaemon(DaemonProcess):
    """``awops run --config CONFIG`` as a subprocess serving its status on ``port``."""

    def __init__(self, config: Path, env: dict[str, str], log: Path, port: int) -> None:
        super().__init__(config, env, log)
        self.url = f"http://127.0.0.1:{port}"

    def document(self) -> dict[str, Any]:
        status, body = get(f"{self.url}/api/status")
        assert status == 200, (status, body)
        document: dict[str, Any] = json.loads(body)
        return document

    def job(self, name: str) -> dict[str, Any]:
        return next(job for job in self.document()["jobs"] if job["job"] == name)

    def wait_until_serving(self) -> None:
        def serving() -> bool:
            assert self.process.poll() is None, self.logs()
            return get(f"{self.url}/healthz")[0] == 200

        wait_for(serving, timeout=60, what="the daemon to serve")

    def wait_for_runs(self, *names: str) -> dict[str, Any]:
        """The document once every job named has finished a run."""

        def ran() -> dict[str, Any] | None:
            document = self.document()
            last = {job["job"]: job["last_run"] for job in document["jobs"]}
            return document if all(last.get(name) for name in names) else None

        result: dict[str, Any] = wait_for(ran, timeout=90, what=f"runs of {', '.join(names)}")
        return result

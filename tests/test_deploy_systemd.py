"""The systemd units (verified and scored by systemd-analyze) and sd_notify from the daemon."""

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from awops.systemd import SystemdNotifier
from tests.fix_awops import clean_environ
from tests.fix_pg import PgDatabase, free_port

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
UNIT_FILES = ["awops.service", "awops-run-once@.service", "awops-run-once@.timer"]
INSTALLED_PATH = "/opt/awops/bin/awops"
MAX_EXPOSURE = 2.0
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze missing (scripts/system-deps.sh)"
)


def render_units(directory: Path) -> list[Path]:
    """The units with ExecStart pointing at this checkout's awops, which verify requires."""
    awops = Path(sys.executable).with_name("awops")
    assert awops.exists(), "install awops into the venv (make test does)"
    rendered = []
    for name in UNIT_FILES:
        text = (UNITS / name).read_text()
        assert name.endswith(".timer") or INSTALLED_PATH in text
        (directory / name).write_text(text.replace(INSTALLED_PATH, str(awops)))
        rendered.append(directory / name)
    return rendered


def directives(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@needs_systemd_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    units = render_units(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *[f"./{unit.name}" for unit in units]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # verify warns on stderr for unknown or misspelt directives without failing.
    assert result.stderr.strip() == "", result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["awops.service", "awops-run-once@.service"])
def test_services_are_hardened(tmp_path: Path, unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    render_units(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", f"./{unit}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert match.group(2) == "OK"


def test_daemon_unit_settings() -> None:
    service = directives("awops.service")
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    # The heartbeat pings every 5 s; the watchdog must allow several missed ones.
    assert int(service["WatchdogSec"][0]) >= 30
    assert service["EnvironmentFile"] == ["/etc/awops/awops.env"]
    assert service["User"] == ["awops"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == [""]
    assert "/var/backups/awops" in service["ReadWritePaths"][0]
    assert "@system-service" in service["SystemCallFilter"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    timer = directives("awops-run-once@.timer")
    assert timer["Persistent"] == ["true"]
    assert directives("awops-run-once@.service")["ExecStart"] == [f"{INSTALLED_PATH} run-once %I"]


def test_notifier_is_a_no_op_outside_systemd() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_seconds is None


def test_notifier_speaks_to_an_abstract_socket() -> None:
    name = f"awops-test-{free_port()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "60000000"})
        assert notifier.watchdog_seconds == 60
        assert notifier.ready("3 jobs scheduled")
        assert server.recv(4096) == b"READY=1\nSTATUS=3 jobs scheduled"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
    # The socket is gone: logged, never raised.
    assert notifier.stopping() is False


def test_daemon_notifies_ready_watchdog_and_stopping(aw_db: PgDatabase, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "awops.toml"
    config.write_text(f'[metrics]\naddr = "127.0.0.1:{port}"\n')
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(notify_path))
        server.settimeout(30)
        env = aw_db.awops_env(NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="60000000")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "awops", "run", "--config", str(config)],
            env=clean_environ(env),
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("w"),
        )
        try:
            ready = server.recv(4096).decode()
            assert ready.startswith("READY=1\nSTATUS="), ready
            # READY means /metrics already serves.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                assert b"awops_build_info" in r.read()
            assert server.recv(4096) == b"WATCHDOG=1"
            daemon.terminate()
            messages = []
            deadline = time.monotonic() + 30
            while b"STOPPING=1\nSTATUS=stopping" not in messages:
                assert time.monotonic() < deadline
                messages.append(server.recv(4096))
        finally:
            if daemon.poll() is None:
                daemon.terminate()
            assert daemon.wait(30) == 0, (tmp_path / "daemon.log").read_text()

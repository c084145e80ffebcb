"""scripts/system-deps.sh, run with an apt-get that records its arguments instead of installing.

The script runs as root in a private mount namespace (``unshare``), with a tmpfs over
/usr/sbin: the policy-rc.d it writes there never reaches the machine, and PATH holds only the
tools it needs, so every package counts as missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-deps.sh"


def packages_the_script_checks() -> list[str]:
    """Every package named in the script's ``need+=(...)`` lines, in order."""
    found: list[str] = []
    for group in re.findall(r"need\+=\(([^)]*)\)", SCRIPT.read_text()):
        found += group.split()
    return found


TOOLS = ("bash", "env", "timeout", "chmod", "rm", "id", "cat")
UNSHARE = shutil.which("unshare")


def fake_apt_get(folder: Path, calls: Path) -> None:
    stub = folder / "apt-get"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n')
    stub.chmod(0o755)


@pytest.mark.skipif(UNSHARE is None, reason="unshare (util-linux) missing")
def test_both_apt_get_calls_wait_for_the_dpkg_lock(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    calls = tmp_path / "apt-get.calls"
    fake_apt_get(bin_dir, calls)
    # Root gets a mount namespace; anyone else maps themselves to root in a user namespace.
    user_namespace = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    mount, bash = shutil.which("mount"), shutil.which("bash")
    assert mount is not None and bash is not None
    inner = f"{mount} -t tmpfs awops-test /usr/sbin && exec {bash} {SCRIPT}"
    result = subprocess.run(
        [UNSHARE, *user_namespace, "--mount", "--propagation", "private", bash, "-c", inner],
        env={"PATH": f"{bin_dir}:/nonexistent", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "mount" in result.stderr and not calls.exists():
        pytest.skip(f"no private mount namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    update, install = calls.read_text().splitlines()
    for call in (update, install):
        timeout = re.search(r"-o DPkg::Lock::Timeout=(\d+)", call)
        assert timeout is not None, call
        assert int(timeout.group(1)) >= 60, call
    assert update.endswith("update -qq"), update
    packages = packages_the_script_checks()
    assert "postgresql" in packages
    assert install.split()[-len(packages) :] == packages, install
    assert "--no-install-recommends" in install

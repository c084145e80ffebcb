"""The source distribution holds what the README points a packager to."""

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sdist_carries_license_deploy_docs_and_tests(tmp_path: Path) -> None:
    # Offline, with the build tools of the dev extra, as a distribution's builder runs it.
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (archive,) = tmp_path.glob("awops-*.tar.gz")
    with tarfile.open(archive) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        top = archive.name.removesuffix(".tar.gz")
        metadata, license_text = (
            sdist.extractfile(f"{top}/{name}").read().decode()  # type: ignore[union-attr]
            for name in ("PKG-INFO", "LICENSE")
        )
    assert license_text.startswith("MIT License\n\nCopyright (c) the awops authors\n")
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    for name in ("LICENSE", "README.md", "Makefile", "Dockerfile", "awops/cli/__init__.py"):
        assert name in members
    for directory in ("deploy", "docs", "scripts", "tests", "bench"):
        on_disk = {
            str(path.relative_to(ROOT))
            for path in (ROOT / directory).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert on_disk, directory
        assert on_disk <= members, sorted(on_disk - members)
    # What the README names by path.
    for name in (
        "deploy/systemd/awops.service",
        "deploy/prometheus/awops-rules.yml",
        "deploy/grafana/awops.json",
        "deploy/k8s/base/secret.example.yaml",
        "docs/configuration.md",
        "docs/runbook.md",
        "scripts/system-deps.sh",
    ):
        assert name in members
    assert not [name for name in members if "__pycache__" in name or name.endswith(".pyc")]

"""docs/architecture.md stays true: its "adding a job" example runs as written.

The example's module and test are taken from the document, written to a directory of their
own, and run by pytest in a fresh process. The module is added to ``awops.checks``' search
path there, so the registry finds the new check by its module name, as it would in the tree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
JOB_MODULE = "awops/checks/pg_invalid_indexes.py"
JOB_TEST = "tests/test_pg_invalid_indexes.py"

_BLOCK = re.compile(r'^```python title="(?P<path>[^"]+)"\n(?P<code>.*?)^```$', re.M | re.S)

_CONFTEST = """
import awops.checks

awops.checks.__path__.append({checks!r})

pytest_plugins = ["tests.fix_pg", "tests.fix_awops"]
"""


def _example_files() -> dict[str, str]:
    return {match["path"]: match["code"] for match in _BLOCK.finditer(DOC.read_text())}


def test_the_example_is_one_module_and_one_test():
    assert sorted(_example_files()) == sorted([JOB_MODULE, JOB_TEST])


def test_the_example_job_and_its_test_pass(tmp_path: Path):
    files = _example_files()
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / Path(JOB_MODULE).name).write_text(files[JOB_MODULE])
    example = tmp_path / "example"
    example.mkdir()
    (example / "conftest.py").write_text(_CONFTEST.format(checks=str(checks)))
    (example / Path(JOB_TEST).name).write_text(files[JOB_TEST])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(example),
            str(example),
        ],
        cwd=ROOT,  # the tests package, for the fixtures
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b2 passed\b", done.stdout), done.stdout


def test_the_example_is_lint_clean(tmp_path: Path):
    files = _example_files()
    for path, code in files.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    ruff = [sys.executable, "-m", "ruff"]
    config = ["--config", str(ROOT / "pyproject.toml")]
    paths = [str(tmp_path / path) for path in files]
    checked = subprocess.run([*ruff, "check", *config, *paths], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = subprocess.run(
        [*ruff, "format", "--check", *config, *paths], capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr

"""The backup library's shape: it imports no job, registers nothing, stays in small modules,
and validates target URLs in one place for the configuration and the verify job alike."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import awops.backup
from awops.config import load_config
from awops.errors import ConfigError
from awops.registry import builtin_registry

BACKUP_PACKAGE = Path(awops.backup.__file__).parent
MAX_MODULE_LINES = 450


def backup_modules() -> list[Path]:
    return sorted(BACKUP_PACKAGE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_backup_library_imports_no_job_module():
    offenders = {
        str(path.relative_to(BACKUP_PACKAGE)): sorted(
            m for m in imported_modules(path) if m == "awops.jobs" or m.startswith("awops.jobs.")
        )
        for path in backup_modules()
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_every_backup_module_is_small():
    sizes = {
        str(p.relative_to(BACKUP_PACKAGE)): len(p.read_text().splitlines())
        for p in backup_modules()
    }
    assert {path: lines for path, lines in sizes.items() if lines >= MAX_MODULE_LINES} == {}


def _modules_after(statement: str) -> str:
    probe = (
        f"{statement}\n"
        "import sys\n"
        "from awops.registry import BUILTIN\n"
        "print(sorted(BUILTIN.names()))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('awops', 'psycopg', 'boto'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def test_importing_the_library_registers_no_job():
    out = _modules_after("import awops.backup.verify_run, awops.backup.backup_run")
    registered, modules = out.splitlines()
    assert registered == "[]"
    assert "awops.jobs" not in modules


@pytest.mark.parametrize("job", ["pg_backup", "pg_backup_verify"])
def test_job_modules_stay_cheap_to_import(job: str):
    _, modules = _modules_after(f"import awops.jobs.{job}").splitlines()
    for heavy in ("psycopg", "boto3", "awops.backup.backup_run", "awops.backup.verify_run"):
        assert f"'{heavy}'" not in modules
    assert "'awops.backup.dump'" not in modules
    assert "'awops.backup.targets'" not in modules


URLS = [
    "/var/backups/awops",
    "file:///var/backups/awops",
    "s3://bucket",
    "s3://bucket/prefix/deeper",
    "file://relative/path",
    "file://localhost/var/x",
    "file:relative",
    "relative/dir",
    "s3:///prefix",
    "s3://bucket/p?x=1",
    "file:///var/x#frag",
    "ftp://host/x",
    "",
]


@pytest.mark.parametrize("url", URLS)
def test_config_and_verify_accept_the_same_targets(url: str):
    def accepted(variable: str) -> bool:
        env = {"DATABASE_BACKEND": "postgresql", variable: url}
        try:
            load_config(None, builtin_registry(), env)
        except ConfigError as exc:
            assert variable in str(exc)
            return False
        return True

    in_config = accepted("AWOPS_BACKUP_TARGET")
    in_verify = accepted("AWOPS_JOB_PG_BACKUP_VERIFY_TARGET")
    assert in_config == in_verify, url

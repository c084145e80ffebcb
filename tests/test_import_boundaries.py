"""Where start-up work happens: modules import at the top, and the few imports that stay
inside functions (so ``awops --help`` and ``awops run-once`` do not load heavy clients) sit at
one boundary each: a job's run, a command's entry, the module that builds an AWS client.

That the backup library imports no job module is tested in ``test_backup_layering.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import awops
from scripts.function_imports import count_function_imports

PACKAGE = Path(awops.__file__).parent

# Imports left inside functions under awops/ (``python -m scripts.function_imports --list``).
# Lower it when one moves to the top; raise it only for a new boundary that keeps a heavy
# library off the start-up path, and say why beside that import.
FUNCTION_IMPORTS_CEILING = 96

# Libraries that jobs build on; a job module imports them, never the other way round.
LIBRARIES = ("backup", "restore", "purge", "locks", "pgbackrest", "dynamodb_restore", "status")

HEAVY = ("prometheus_client", "boto3", "botocore", "psycopg_pool", "apscheduler", "cryptography")


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs: those under ``if TYPE_CHECKING:`` are skipped."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_function_level_imports_stay_under_the_ceiling():
    found = count_function_imports(PACKAGE)
    total = sum(len(imports) for imports in found.values())
    listing = [f"{module}:{line} {name}" for module, lines in found.items() for line, name in lines]
    assert total <= FUNCTION_IMPORTS_CEILING, "\n".join(listing)


def test_libraries_import_no_job_module_at_run_time():
    offenders = {}
    for library in LIBRARIES:
        for path in sorted((PACKAGE / library).rglob("*.py")):
            relative = str(path.relative_to(PACKAGE))
            # Jobs and commands build on the libraries, never the other way round.
            above = {
                module
                for module in _runtime_imports(path)
                if module.split(".")[:2] in (["awops", "jobs"], ["awops", "cli"])
            }
            if above:
                offenders[relative] = sorted(above)
    assert offenders == {}


def _modules_loaded_by(argv: list[str]) -> list[str]:
    probe = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n"
        "    runpy.run_module('awops', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.splitlines()


def test_help_loads_no_heavy_library():
    modules = _modules_loaded_by(["awops", "--help"])
    assert "awops.cli" in modules
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    # Nor the database driver, nor any job: help is text.
    assert [m for m in modules if m.split(".")[0] == "psycopg"] == []
    assert [m for m in modules if m.startswith(("awops.jobs.", "awops.checks."))] == []


def test_every_subcommand_help_loads_no_heavy_library():
    for command in (["run-once"], ["config"], ["backups", "list"], ["restore", "postgresql"]):
        modules = _modules_loaded_by(["awops", *command, "--help"])
        assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == [], command


def test_a_subcommand_loads_no_other_subcommands_module():
    # Cron pays each run-once's start-up: the restore and backups commands' imports stay out.
    for command, loaded in (
        (["run-once"], ["awops.cli.run_once_cmd"]),
        # The restore group's subcommands too: a PostgreSQL restore skips DynamoDB's command.
        (["restore", "postgresql"], ["awops.cli.restore_cmd", "awops.cli.restore_postgresql_cmd"]),
        (["restore", "dynamodb"], ["awops.cli.restore_cmd", "awops.cli.restore_dynamodb_cmd"]),
    ):
        modules = _modules_loaded_by(["awops", *command, "--help"])
        commands = sorted(m for m in modules if m.startswith("awops.cli.") and m.endswith("_cmd"))
        assert commands == loaded, command

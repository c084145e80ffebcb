"""No shell anywhere: every subprocess gets an argument list, never a command line to parse."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    path
    for folder in ("awops", "bench", "scripts", "tests")
    for path in (ROOT / folder).rglob("*.py")
    if ".venv" not in path.parts
)
# Functions that start a shell whatever their arguments.
SHELL_FUNCTIONS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
}


def shell_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"line {node.lineno}: shell={ast.unparse(keyword.value)}")
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and (func.value.id, func.attr) in SHELL_FUNCTIONS
        ):
            found.append(f"line {node.lineno}: {func.value.id}.{func.attr}()")
    return found


def test_the_walk_finds_every_form_of_shell():
    sample = ast.parse(
        "import os, subprocess\n"
        "subprocess.run('ls', shell=True)\n"
        "subprocess.Popen(cmd, shell=flag)\n"
        "os.system('ls')\n"
        "subprocess.run(['ls'], shell=False)\n"
    )
    assert len(shell_uses(sample)) == 3


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shell_in(path: Path):
    assert shell_uses(ast.parse(path.read_text(), str(path))) == []


def test_the_walk_covers_the_package():
    assert len([p for p in SOURCES if p.parts[-2:] == ("awops", "runner.py")]) == 1
    assert len(SOURCES) > 40

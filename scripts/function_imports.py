"""Count the imports made inside function bodies under ``awops/``.

Start-up work belongs in one place: modules import at the top, and the few imports that stay
lazy (to keep ``awops run-once`` and ``awops --help`` from loading heavy clients) sit at one
boundary each. ``tests/test_import_boundaries.py`` holds the count to a ceiling.

    python -m scripts.function_imports [--list]
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "awops"


def function_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for each import statement inside a function of ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    seen: set[int] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in seen:
                seen.add(id(node))
                if isinstance(node, ast.Import):
                    module = ", ".join(alias.name for alias in node.names)
                else:
                    module = "." * node.level + (node.module or "")
                yield node.lineno, module


def count_function_imports(package: Path = PACKAGE) -> dict[str, list[tuple[int, str]]]:
    """Per module (relative to the package's parent), its function-level imports."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        imports = sorted(function_imports(path))
        if imports:
            found[str(path.relative_to(package.parent))] = imports
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--list", action="store_true", help="list each import by module")
    args = parser.parse_args()
    found = count_function_imports()
    if args.list:
        for module, imports in found.items():
            for line, imported in imports:
                print(f"{module}:{line}: {imported}")
    print(sum(len(imports) for imports in found.values()))


if __name__ == "__main__":
    main()

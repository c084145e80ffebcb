"""The metrics catalogue is the one list of awops' series: the README documents exactly it, awops
records through it, and prometheus_client exposes each spec as declared."""

import ast
import fnmatch
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from awops.metrics import CounterSpec, HistogramSpec, Metrics, catalogue

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CATALOGUE = ROOT / "awops" / "metrics" / "catalogue.py"
SPECS = {name: value for name, value in vars(catalogue).items() if value in catalogue.ALL}
BY_NAME = {spec.name: spec for spec in catalogue.ALL}


def readme_rows() -> list[tuple[list[str], set[str], set[str]]]:
    """The README's metrics table: per row the series (``*`` a wildcard), the label names and
    the series marked ``(histogram)``."""
    text = README.read_text()
    section = text[text.index("\n## Metrics\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `awops_"):
            continue
        metric_cell, labels_cell = (cell.strip() for cell in line.strip().strip("|").split("|"))
        names = re.findall(r"`(awops_[a-z_*]+)`", metric_cell)
        histograms = set(re.findall(r"`(awops_[a-z_]+)` \(histogram\)", metric_cell))
        # Label values are given in parentheses: `type` (`full`, `diff`, `incr`).
        labels = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", labels_cell)))
        rows.append((names, labels, histograms))
    assert rows, "README.md has no metrics table under ## Metrics"
    return rows


def documented(pattern: str) -> list[str]:
    return [name for name in BY_NAME if fnmatch.fnmatchcase(name, pattern)]


def test_catalogue_declares_each_series_once_and_names_it_by_its_kind() -> None:
    assert len(BY_NAME) == len(catalogue.ALL) == len(SPECS)
    for spec in catalogue.ALL:
        assert spec.name.startswith("awops_"), spec
        assert spec.help.strip(), spec
        assert spec.name.endswith("_total") == isinstance(spec, CounterSpec), spec
        assert len(set(spec.labels)) == len(spec.labels), spec
        if isinstance(spec, HistogramSpec):
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets, spec


def test_every_documented_series_is_in_the_catalogue() -> None:
    for names, _, _ in readme_rows():
        for pattern in names:
            assert documented(pattern), f"README.md documents {pattern}, the catalogue has not"


def test_every_catalogue_series_is_documented() -> None:
    patterns = [pattern for names, _, _ in readme_rows() for pattern in names]
    for name in BY_NAME:
        assert any(fnmatch.fnmatchcase(name, p) for p in patterns), f"{name} not in README.md"


def test_readme_labels_and_histograms_match_the_catalogue() -> None:
    for names, labels, histograms in readme_rows():
        specs = [BY_NAME[name] for pattern in names for name in documented(pattern)]
        assert labels == {label for spec in specs for label in spec.labels}, names
        assert histograms == {s.name for s in specs if isinstance(s, HistogramSpec)}, names


def catalogue_references(path: Path) -> set[str]:
    """The catalogue's constants ``path`` uses: ``catalogue.NAME`` or imported by name."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "catalogue"
        ):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "awops.metrics.catalogue":
            used.update(alias.name for alias in node.names)
    return used


def test_every_catalogue_series_is_recorded_by_some_module() -> None:
    used: set[str] = set()
    for path in (ROOT / "awops").glob("**/*.py"):
        if path != CATALOGUE:
            used |= catalogue_references(path)
    assert set(SPECS) - used == set(), "declared in the catalogue but recorded nowhere"


def test_no_module_declares_a_series_outside_the_catalogue() -> None:
    for path in (ROOT / "awops").glob("**/*.py"):
        if path == CATALOGUE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in BY_NAME, f"{path}: {node.value} outside the catalogue"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("counter", "gauge", "histogram")
                and node.args
                and isinstance(node.args[0], ast.Constant | ast.JoinedStr)
            ):
                raise AssertionError(f"{path}:{node.lineno} names a series; use a catalogue spec")


def test_prometheus_exposes_every_spec_as_declared() -> None:
    metrics = Metrics(CollectorRegistry())
    for spec in catalogue.ALL:
        series = metrics.series(spec)
        assert metrics.series(spec) is series  # asking again returns the same series
        if spec.labels:
            series.labels(*(f"x-{label}" for label in spec.labels))
    text = generate_latest(metrics.registry).decode()
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.MULTILINE))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    for spec in catalogue.ALL:
        assert types.get(spec.name) == spec.kind, spec.name
        assert helps.get(spec.name) == spec.help, spec.name

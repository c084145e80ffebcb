"""What every subcommand shares: the --config option and loading the configuration or exiting 2."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from awops.config import Config, load_config, resolve_config_path
from awops.errors import ConfigError
from awops.registry import JobRegistry, builtin_registry

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML configuration file (else $AWOPS_CONFIG, else /etc/awops/awops.toml).",
    )(command)


def load_or_exit(
    config_path: str | None, only_jobs: Sequence[str] | None = None
) -> tuple[Config, JobRegistry, Path | None]:
    """Load and validate; ``only_jobs`` limits the job modules imported to those named (and
    those configured), for ``run-once`` of named jobs."""
    registry = builtin_registry(only_jobs)
    path = resolve_config_path(config_path, os.environ)
    try:
        return load_config(path, registry, os.environ), registry, path
    except ConfigError as exc:
        fail_config(exc)


def fail_config(exc: ConfigError) -> NoReturn:
    click.echo(f"awops: configuration error: {exc}", err=True)
    raise SystemExit(EXIT_USAGE)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A short aligned table; the last column is left unpadded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)


def ignore_stop_signals() -> None:
    """From here on SIGTERM and SIGINT do nothing: call when the command's work is over.

    A stop request then has nothing left to stop. Python's teardown puts the default handlers
    back before it unloads modules, and a SIGTERM landing there would kill the process: exit
    143 after a reported success. What is left (a push bounded by its timeout, the output,
    the teardown) finishes instead.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

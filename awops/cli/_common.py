"""What every subcommand shares: the --config option and loading the configuration or exiting 2."""

from __future__ import annotations

import json
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
    config_path: str | None, only_jobs: Sequence[str] | None = None, as_json: bool = False
) -> tuple[Config, JobRegistry, Path | None]:
    """Load and validate; ``only_jobs`` limits the job modules imported to those named (and
    those configured), for ``run-once`` of named jobs. ``as_json``: an error also becomes the
    command's JSON document on stdout."""
    registry = builtin_registry(only_jobs)
    path = resolve_config_path(config_path, os.environ)
    try:
        return load_config(path, registry, os.environ), registry, path
    except ConfigError as exc:
        fail_config(exc, as_json)


def fail_config(exc: ConfigError, as_json: bool = False) -> NoReturn:
    fail_usage(f"configuration error: {exc}", as_json)


def fail_usage(message: str, as_json: bool = False) -> NoReturn:
    """Exit 2 with ``message`` on stderr; with ``as_json`` also ``{"ok": false, "error": ...,
    "jobs": []}`` on stdout, so a caller that parses the output learns why nothing ran."""
    click.echo(f"awops: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message, "jobs": []}))
    raise SystemExit(EXIT_USAGE)


def complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of job names (``awops run-once pg-<TAB>``), from the registry's file
    names: no job module is imported."""
    given = set(ctx.params.get(param.name or "", None) or ())
    names = builtin_registry(()).known_names()
    return [name for name in sorted(names) if name.startswith(incomplete) and name not in given]


def ignore_stop_signals() -> None:
    """From here on SIGTERM and SIGINT do nothing: call when the command's work is over.

    A stop request then has nothing left to stop. Python's teardown puts the default handlers
    back before it unloads modules, and a SIGTERM landing there would kill the process: exit
    143 after a reported success. What is left (a push bounded by its timeout, the output,
    the teardown) finishes instead.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

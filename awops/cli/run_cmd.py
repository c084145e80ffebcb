from __future__ import annotations

import os

import click

from awops.cli._common import (
    EXIT_USAGE,
    config_option,
    fail_config,
    ignore_stop_signals,
    load_or_exit,
)
from awops.errors import ConfigError
from awops.logs import scrubber, setup_logging


@click.command("run")
@config_option
def run_command(config_path: str | None) -> None:
    """Run the daemon: schedule every enabled job and serve /metrics, /healthz, /readyz."""
    config, registry, path = load_or_exit(config_path)
    scrubber.update(config.secrets())
    setup_logging(config.logging.format, config.logging.level)
    from awops.daemon import Daemon
    from awops.metrics.http import ListenError

    try:
        code = Daemon(config, registry, path, dict(os.environ)).run()
    except ConfigError as exc:  # a value the scheduler refuses; raised before it starts
        fail_config(exc)
    except ListenError as exc:
        # Nothing has started: a configuration problem, like a bad value (exit 2).
        origin = (
            "environment AWOPS_METRICS_ADDR"
            if "AWOPS_METRICS_ADDR" in os.environ
            else f"{config.source}: metrics.addr"
        )
        click.echo(f"awops: configuration error: {origin}: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    ignore_stop_signals()  # it has shut down: a second SIGTERM must not turn 0 into 143
    raise SystemExit(code)

from __future__ import annotations

import click

from awops.cli._common import config_option, load_or_exit
from awops.config import render_config


@click.command("config")
@click.option("--check", is_flag=True, help="Validate and exit: 0 when valid, 2 when not.")
@config_option
def config_command(check: bool, config_path: str | None) -> None:
    """Print the effective configuration (secrets masked), or validate it with --check."""
    config, _registry, _path = load_or_exit(config_path)
    if check:
        click.echo(f"configuration OK ({config.source})")
        return
    click.echo(render_config(config), nl=False)

from __future__ import annotations

import click

from awops.cli._common import config_option, load_or_exit
from awops.registry import builtin_registry


@click.command("config")
@click.option("--check", is_flag=True, help="Validate and exit: 0 when valid, 2 when not.")
@click.option(
    "--explain", is_flag=True, help="Print every key with its default, variables and meaning."
)
@config_option
def config_command(check: bool, explain: bool, config_path: str | None) -> None:
    """Print the effective configuration (secrets left out), or validate it with --check.

    What is valid but will fail (pg-backup with no backup target) is a warning: --check still
    exits 0.
    """
    if explain:
        from awops.config_doc import explain as explain_keys

        click.echo(explain_keys(builtin_registry()), nl=False)
        return
    config, registry, _path = load_or_exit(config_path)
    from awops.config_render import config_warnings, render_config

    warnings = config_warnings(config, registry)
    if check:
        for warning in warnings:
            click.echo(f"awops: warning: {warning}", err=True)
        click.echo(f"configuration OK ({config.source}; backends: {config.backends_origin})")
        return
    click.echo(render_config(config, warnings), nl=False)

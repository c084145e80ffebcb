"""Minimal ``restore`` and ``backups`` groups carrying the DynamoDB commands.

The PostgreSQL side brings its own groups; these are kept tiny so the two merge into one.
"""

from __future__ import annotations

import json

import click

from awops.cli._common import EXIT_PROBLEM, config_option, load_or_exit
from awops.cli.restore_dynamodb_cmd import restore_dynamodb_command


@click.group("restore")
def restore_group() -> None:
    """Restore backups into new tables or databases; never over existing ones."""


restore_group.add_command(restore_dynamodb_command)


@click.group("backups")
def backups_group() -> None:
    """List backups and restore points; pin backups so retention keeps them."""


@backups_group.command("list")
@click.option("--backend", type=click.Choice(["dynamodb"]), default="dynamodb")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@config_option
def backups_list_command(backend: str, as_json: bool, config_path: str | None) -> None:
    """Every restore point, newest first: PITR windows and on-demand backups."""
    from awops.cli.backups_dynamodb import format_dynamodb_backups, list_dynamodb_backups
    from awops.errors import JobError

    config, _registry, _path = load_or_exit(config_path, ())
    try:
        entries = list_dynamodb_backups(config)
    except JobError as exc:
        click.echo(f"awops: {exc}", err=True)
        raise SystemExit(EXIT_PROBLEM) from None
    if as_json:
        click.echo(json.dumps({"backups": entries}))
    else:
        click.echo(format_dynamodb_backups(entries))


@backups_group.command("pin")
@click.argument("backup_id", metavar="ID")
@config_option
def backups_pin_command(backup_id: str, config_path: str | None) -> None:
    """Pin an awops backup (ARN or name): retention never deletes it."""
    _pin_or_unpin(backup_id, config_path, pin=True)


@backups_group.command("unpin")
@click.argument("backup_id", metavar="ID")
@config_option
def backups_unpin_command(backup_id: str, config_path: str | None) -> None:
    """Unpin a backup: retention treats it like any other again."""
    _pin_or_unpin(backup_id, config_path, pin=False)


def _pin_or_unpin(backup_id: str, config_path: str | None, pin: bool) -> None:
    from awops.cli.backups_dynamodb import pin_dynamodb_backup, unpin_dynamodb_backup
    from awops.errors import AwopsError

    config, _registry, _path = load_or_exit(config_path, ())
    try:
        if pin:
            done = pin_dynamodb_backup(config, backup_id)
        else:
            done = unpin_dynamodb_backup(config, backup_id)
    except AwopsError as exc:
        click.echo(f"awops: {exc}", err=True)
        raise SystemExit(EXIT_PROBLEM) from None
    verb = "pinned" if pin else "unpinned"
    state = verb if done["changed"] else f"already {verb}"
    click.echo(f"{state}: {done['name'] or done['id']} ({done['id']})")

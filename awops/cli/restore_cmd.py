"""``awops restore``: one subcommand per backend; a restore never overwrites what exists.

Exit codes: 0 restored and checked; 1 a restore or a check failed; 2 usage or configuration
error, before anything is touched.
"""

from __future__ import annotations

import click

from awops.cli import LazyGroup

# A PostgreSQL restore does not import the DynamoDB one's modules, nor the reverse.
_SUBCOMMANDS = {
    "postgresql": "awops.cli.restore_postgresql_cmd:restore_postgresql_command",
    "dynamodb": "awops.cli.restore_dynamodb_cmd:restore_dynamodb_command",
}


@click.group("restore", cls=LazyGroup, subcommands=_SUBCOMMANDS)
def restore_group() -> None:
    """Restore backups into new databases or tables; never over existing ones."""

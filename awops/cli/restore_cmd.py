"""``awops restore``: one subcommand per backend; a restore never overwrites what exists.

Exit codes: 0 restored and checked; 1 a restore or a check failed; 2 usage or configuration
error, before anything is touched.
"""

from __future__ import annotations

import click

from awops.cli.restore_dynamodb_cmd import restore_dynamodb_command
from awops.cli.restore_postgresql_cmd import restore_postgresql_command


@click.group("restore")
def restore_group() -> None:
    """Restore backups into new databases or tables; never over existing ones."""


restore_group.add_command(restore_postgresql_command)
restore_group.add_command(restore_dynamodb_command)

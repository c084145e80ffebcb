"""The ``awops`` command. Subcommands live in sibling modules; heavy imports stay inside them."""

from __future__ import annotations

import gc
import importlib
from typing import Any

import click

from awops import __version__

# Each subcommand's module, imported when that subcommand is run (or `awops --help` lists
# them all): `run-once` from cron should not pay for the restore and backups commands' imports.
_SUBCOMMANDS = {
    "run": "awops.cli.run_cmd:run_command",
    "run-once": "awops.cli.run_once_cmd:run_once_command",
    "jobs": "awops.cli.jobs_cmd:jobs_command",
    "config": "awops.cli.config_cmd:config_command",
    "backups": "awops.cli.backups_cmd:backups_group",
    "restore": "awops.cli.restore_cmd:restore_group",
    "status": "awops.cli.status_cmd:status_command",
}


class LazyGroup(click.Group):
    """A group whose subcommands (name: "module:attribute") are imported when first asked
    for."""

    def __init__(self, *args: Any, subcommands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subcommands = subcommands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.subcommands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.subcommands:
            module_name, attribute = self.subcommands[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(
    cls=LazyGroup,
    subcommands=_SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="awops")
def cli() -> None:
    """awops keeps the databases of an ActingWeb deployment healthy.

    Exit codes: 0 every job ran and is healthy; 1 a job found a problem or failed;
    2 usage or configuration error (nothing was run).
    """


def main() -> None:
    """The console script: run the command, then leave without a last garbage collection."""
    try:
        # Named explicitly so `python -m awops` completes and reads as `awops` too: click
        # derives the completion variable from the program name.
        cli(prog_name="awops", complete_var="_AWOPS_COMPLETE")
    finally:
        # Interpreter teardown walks every live object in a final collection (about 40 ms
        # after run-once, which cron and CronJobs pay on every run). The process is ending
        # and its memory goes back with it; frozen objects are skipped by that walk.
        gc.freeze()

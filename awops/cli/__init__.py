"""The ``awops`` command. Subcommands live in sibling modules; heavy imports stay inside them."""

from __future__ import annotations

import gc

import click

from awops import __version__
from awops.cli.config_cmd import config_command
from awops.cli.jobs_cmd import jobs_command
from awops.cli.restore_cmd import restore_group
from awops.cli.run_cmd import run_command
from awops.cli.run_once_cmd import run_once_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="awops")
def cli() -> None:
    """awops keeps the databases of an ActingWeb deployment healthy.

    Exit codes: 0 every job ran and is healthy; 1 a job found a problem or failed;
    2 usage or configuration error (nothing was run).
    """


cli.add_command(run_command)
cli.add_command(run_once_command)
cli.add_command(jobs_command)
cli.add_command(config_command)
cli.add_command(restore_group)


def main() -> None:
    """The console script: run the command, then leave without a last garbage collection."""
    try:
        cli()
    finally:
        # Interpreter teardown walks every live object in a final collection (about 40 ms
        # after run-once, which cron and CronJobs pay on every run). The process is ending
        # and its memory goes back with it; frozen objects are skipped by that walk.
        gc.freeze()

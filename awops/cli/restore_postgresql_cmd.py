"""``awops restore postgresql``: a pg-backup into a database the operator names.

The work is in :mod:`awops.restore`, imported when the command runs (start-up stays light).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import click

from awops.cli._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    config_option,
    ignore_stop_signals,
    load_or_exit,
)
from awops.context import Resources
from awops.logs import scrubber, setup_logging
from awops.text_table import table


def _usage_error(message: str) -> None:
    click.echo(f"awops: {message}", err=True)
    raise SystemExit(EXIT_USAGE)


@click.command("postgresql")
@click.argument("backup", default="latest", metavar="[ID | latest]")
@click.option("--to-database", required=True, help="Database to restore into.")
@click.option("--target", default="", help="Search only this backup target URL.")
@click.option(
    "--table",
    "tables",
    multiple=True,
    help="Restore only this table (name or schema.name), with its indexes and constraints; "
    "repeatable.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="pg_restore --jobs (default: the cores, at most 4).",
)
@click.option(
    "--globals", "apply_globals", is_flag=True, help="Create the backup's roles that are missing."
)
@click.option(
    "--replace", default="", help="Allow writing into this existing database (repeat its name)."
)
@click.option(
    "--identity",
    "identity_file",
    default="",
    help="age identity file (else [jobs.pg-backup-verify] identity_file).",
)
@click.option(
    "--work-dir",
    default="",
    help="Where S3 or encrypted dumps are fetched (else [jobs.pg-backup-verify] work_dir).",
)
@click.option(
    "--owner",
    "keep_owner",
    is_flag=True,
    help="Restore ownership and privileges as dumped (default: --no-owner --no-privileges).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON document on stdout; logs on stderr."
)
@config_option
def restore_postgresql_command(
    backup: str,
    to_database: str,
    target: str,
    tables: tuple[str, ...],
    jobs: int | None,
    apply_globals: bool,
    replace: str,
    identity_file: str,
    work_dir: str,
    keep_owner: bool,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Restore a pg-backup (the latest by the server's clock, or an ID) into --to-database.

    A database that exists and holds a table is written into only when --replace repeats
    its name. The dump's sha256 is checked before the database is touched; a database the
    restore created is dropped again when it fails or is interrupted.
    """
    from awops.restore import RestoreRequest, RestoreUsageError

    request = RestoreRequest(
        backup=backup,
        to_database=to_database,
        target=target,
        tables=tables,
        jobs=jobs or 0,
        apply_globals=apply_globals,
        replace=replace,
        identity_file=identity_file,
        work_dir=work_dir,
        keep_owner=keep_owner,
    )
    try:
        request.check()
    except RestoreUsageError as exc:
        _usage_error(str(exc))
    config, _registry, _path = load_or_exit(config_path, ["pg-backup-verify"])

    scrubber.update(config.secrets())
    setup_logging(config.logging.format, config.logging.level)
    urls = [target] if target else list(config.backup.targets)
    if not urls:
        _usage_error(
            "no backup target: pass --target, or set [backup] targets or AWOPS_BACKUP_TARGET"
        )
    report = _run(request, config, urls)
    ignore_stop_signals()
    if report is None:
        raise SystemExit(EXIT_USAGE)
    # Messages quote servers and pg_restore; none should hold a secret, and none leaves here
    # holding one.
    if as_json:
        click.echo(scrubber.scrub(json.dumps(report.as_json())))
    else:
        _print(report, scrubber.scrub)
    raise SystemExit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _run(request: Any, config: Any, urls: list[str]) -> Any:
    """The restore's report; None after a usage error found once the backup was read."""
    from concurrent.futures import ThreadPoolExecutor

    from awops.backup.targets import Target, open_target
    from awops.restore import RestoreUsageError
    from awops.restore.postgresql import PostgresRestore, setup_from_config
    from awops.restore.stopping import StopRequest

    resources = Resources(config)
    stop = StopRequest()
    signal.signal(signal.SIGTERM, stop.handle_signal)
    signal.signal(signal.SIGINT, stop.handle_signal)

    def open_targets() -> list[Target]:
        return [open_target(url, resources.aws, config.backup) for url in urls]

    # Opening an S3 target imports boto3 and builds its client (most of a second): done
    # beside the restore's first steps, which talk to PostgreSQL.
    with ThreadPoolExecutor(1, thread_name_prefix="awops-targets") as pool:
        targets = pool.submit(open_targets)
        try:
            setup = setup_from_config(config, targets.result, stop)
            return PostgresRestore(request, setup, stop).run()
        except RestoreUsageError as exc:
            click.echo(f"awops: {exc}", err=True)
            return None
        finally:
            resources.close()


def _print(report: Any, scrub: Callable[[str], str]) -> None:
    if report.counts:
        rows = [
            [
                count.table,
                "-" if count.rows is None else str(count.rows),
                "-" if count.expected is None else str(count.expected),
                "ok" if count.ok else "DIFFERS",
            ]
            for count in report.counts
        ]
        click.echo(table(["TABLE", "ROWS", "EXPECTED", ""], rows))
    for skipped in report.skipped_foreign_keys:
        click.echo(scrub(f"foreign key not restored: {skipped}"))
    if report.globals:
        created = ", ".join(report.globals["roles_created"]) or "none"
        click.echo(f"roles created (without passwords): {created}")
    if report.error:
        click.echo(scrub(f"awops: {report.summary()}"), err=True)
    else:
        click.echo(scrub(report.summary()))

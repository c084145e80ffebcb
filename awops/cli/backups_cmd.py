"""``awops backups``: list, check, pin and unpin backups, without a database.

Exit codes: 0 done and healthy; 1 a problem (a target that cannot be read, a backup that
fails its check, a backup that is not there); 2 usage or configuration error, before any
target is touched. Heavy imports (targets, boto3, psycopg) wait until a command runs.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from awops.backup.sources import SOURCES
from awops.cli._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    config_option,
    load_or_exit,
)
from awops.context import Resources
from awops.logs import scrubber, setup_logging
from awops.sizes import BINARY_UNITS, size_text
from awops.text_table import table

if TYPE_CHECKING:
    from awops.backup.listing import BackupSource, ListedBackup, PinResult
    from awops.config import Config

DEFAULT_BACKEND = "postgresql"


def _target_option(command: Any) -> Any:
    return click.option(
        "--target",
        default=None,
        metavar="URL",
        help="Only this target (s3://bucket/prefix, file:///dir); default: [backup] targets.",
    )(command)


def _json_option(command: Any) -> Any:
    return click.option(
        "--json", "as_json", is_flag=True, help="One JSON document on stdout; logs on stderr."
    )(command)


def _usage_error(message: str) -> None:
    click.echo(f"awops: {message}", err=True)
    raise SystemExit(EXIT_USAGE)


def _setup(config_path: str | None) -> Config:
    config, _registry, _path = load_or_exit(config_path)

    scrubber.update(config.secrets())
    setup_logging(config.logging.format, config.logging.level)
    return config


def _source(backend: str, config: Config, target: str | None) -> BackupSource:
    from awops.backup.listing import open_source

    source = open_source(backend, config, Resources(config))
    problem = source.usage_problem(target)
    if problem is not None:
        _usage_error(problem)
    return source


def _report_failed(failed: dict[str, str]) -> None:
    for target, error in failed.items():
        click.echo(f"awops: {target}: {error}", err=True)


@click.group("backups")
def backups_group() -> None:
    """List, check, pin and unpin backups: pg-backup's on [backup] targets, DynamoDB's
    restore windows and on-demand backups."""


@backups_group.command("list")
@click.option(
    "--backend",
    type=click.Choice(sorted(SOURCES)),
    default=None,
    help="Only this backend's backups; default: every backend with backups configured.",
)
@_target_option
@_json_option
@config_option
def list_command(
    backend: str | None, target: str | None, as_json: bool, config_path: str | None
) -> None:
    """Every backup on every target (or --target), newest first by the database's clock."""
    config = _setup(config_path)
    from awops.backup.listing import open_source

    sources = []
    if backend is not None:
        sources.append(_source(backend, config, target))
    else:
        resources = Resources(config)
        problems = []
        for name in sorted(SOURCES):
            candidate = open_source(name, config, resources)
            problem = candidate.usage_problem(target)
            if problem is None:
                sources.append(candidate)
            else:
                problems.append(f"{name}: {problem}")
        if not sources:
            _usage_error("; ".join(problems))
    from awops.backup.listing import Listing

    listing = Listing()
    tables = []
    for source in sources:
        listed = source.list_backups(target)
        listing.extend(listed)
        own_table = source.people_table(listed.newest_first())
        if own_table is not None:
            tables.append(own_table)
        elif listed.backups:
            tables.append(_backups_table(listed.newest_first()))
    backups = listing.newest_first()
    if as_json:
        document: dict[str, Any] = {"backups": [entry.as_json() for entry in backups]}
        if listing.failed_targets:
            document["failed_targets"] = listing.failed_targets
        click.echo(json.dumps(document))
    elif tables:
        click.echo("\n\n".join(tables))
    else:
        click.echo("no backups")
    _report_failed(listing.failed_targets)
    raise SystemExit(EXIT_PROBLEM if listing.failed_targets else EXIT_OK)


def _backups_table(backups: list[ListedBackup]) -> str:
    headers = ["ID", "TARGET", "CREATED", "SIZE", "ENCRYPTED", "PINNED", "VERIFIED", "KEPT BY"]
    rows = []
    for entry in backups:
        verified = "never"
        if entry.verified is not None:
            verified = ("ok " if entry.verified["ok"] else "FAILED ") + entry.verified["at"]
        note = "" if entry.complete else "INCOMPLETE: "
        rows.append(
            [
                entry.id,
                entry.target,
                entry.created,
                _size(entry.size_bytes),
                "age" if entry.encrypted else "no",
                "pinned" if entry.pinned else "-",
                verified,
                ",".join(entry.kept_by) or ("-" if not entry.complete else "(deleted next)"),
                note + "; ".join(entry.problems),
            ]
        )
    return table([*headers, "PROBLEMS"], rows)


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "?"
    return size_text(size_bytes, units=BINARY_UNITS[:4])  # GiB at most


@backups_group.command("check")
@click.argument("backup", required=False, default="all", metavar="[ID | latest | all]")
@_target_option
@click.option(
    "--identity",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="age identity file for encrypted backups; default [jobs.pg-backup-verify] identity_file.",
)
@_json_option
@config_option
def check_command(
    backup: str, target: str | None, identity: str | None, as_json: bool, config_path: str | None
) -> None:
    """Check backups without a restore: size, sha256, decryption, pg_restore --list.

    BACKUP is a backup id, latest (each target's newest backup of the configured database)
    or all (the default).
    """
    config = _setup(config_path)
    source = _source(DEFAULT_BACKEND, config, target)
    if backup not in ("all", "latest"):
        problem = source.backup_id_problem(backup)
        if problem is not None:
            _usage_error(problem)
    verify_options = config.jobs["pg-backup-verify"].options
    identity_file = identity or verify_options.identity_file
    identities = _identities_or_exit(identity_file, "--identity" if identity else None)

    from awops.backup.check import BackupCheck
    from awops.backup.pg_source import PgBackupSource

    assert isinstance(source, PgBackupSource)
    stop = _ChildrenStop()
    checker = BackupCheck(
        source, identities, verify_options.pg_restore, verify_options.work_dir, stop.register
    )
    report = checker.run(backup, target)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    elif report.backups:
        rows = [
            [b.id, b.target, "ok" if b.ok else "PROBLEM", "; ".join(b.problems) or "-"]
            for b in report.backups
        ]
        click.echo(table(["ID", "TARGET", "RESULT", "PROBLEMS"], rows))
    else:
        click.echo("no backups to check")
        click.echo("awops: no complete backup on the targets: nothing proven", err=True)
    _report_failed(report.failed_targets)
    raise SystemExit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _identities_or_exit(identity_file: str, option: str | None) -> Any:
    """A loader of the identities, read now so that a bad file is exit 2 before anything."""
    from awops.backup.encryption import AgeError, read_identities
    from awops.backup.fetch import identities_from

    if identity_file:
        try:
            read_identities(Path(identity_file))
        except AgeError as exc:
            where = option or "[jobs.pg-backup-verify] identity_file"
            _usage_error(f"{where}: {exc}")
    return identities_from(
        identity_file, "pass --identity FILE or set [jobs.pg-backup-verify] identity_file"
    )


class _ChildrenStop:
    """SIGTERM and SIGINT end the command, killing the pg_restore it waits for first."""

    def __init__(self) -> None:
        self._kills: list[Any] = []
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def register(self, kill: Any) -> None:
        self._kills.append(kill)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        for kill in self._kills:
            kill()
        click.echo(f"awops: stopped by signal {signum}", err=True)
        raise SystemExit(EXIT_PROBLEM)


def _backend_option(command: Any) -> Any:
    return click.option(
        "--backend",
        type=click.Choice(sorted(SOURCES)),
        default=None,
        help="The backend whose backup ID is; default: the one whose ids ID looks like.",
    )(command)


def _pin_source(
    backup: str, backend: str | None, target: str | None, config_path: str | None
) -> Any:
    """The source whose backup ``backup`` is: ``--backend``'s, else the one whose ids it fits."""
    config = _setup(config_path)
    if backend is None:
        from awops.backup.listing import open_source

        resources = Resources(config)
        usable = [
            name
            for name in sorted(SOURCES)
            if open_source(name, config, resources).usage_problem(target) is None
        ]
        fitting = [
            name
            for name in usable
            if open_source(name, config, resources).backup_id_problem(backup) is None
        ]
        if len(fitting) == 1:
            backend = fitting[0]
        elif len(usable) == 1:
            backend = usable[0]  # its own message says why ID is not one of its backups
        else:
            backend = DEFAULT_BACKEND
    source = _source(backend, config, target)
    problem = source.backup_id_problem(backup)
    if problem is not None:
        _usage_error(problem)
    return source


@backups_group.command("pin")
@click.argument("backup", metavar="ID")
@click.option("--reason", default="", help="Why it is kept (saved in the pin marker).")
@_backend_option
@_target_option
@config_option
def pin_command(
    backup: str, reason: str, backend: str | None, target: str | None, config_path: str | None
) -> None:
    """Pin backup ID: retention never deletes it, on every target that holds it."""
    source = _pin_source(backup, backend, target, config_path)
    _pin_report(backup, "pinned", "already pinned", source.pin(backup, target, reason))


@backups_group.command("unpin")
@click.argument("backup", metavar="ID")
@_backend_option
@_target_option
@config_option
def unpin_command(
    backup: str, backend: str | None, target: str | None, config_path: str | None
) -> None:
    """Remove the pin of backup ID: retention judges it like any other again."""
    source = _pin_source(backup, backend, target, config_path)
    _pin_report(backup, "unpinned", "was not pinned", source.unpin(backup, target))


def _pin_report(backup: str, done: str, already: str, result: PinResult) -> None:
    for url in result.done:
        click.echo(f"{backup}: {done} on {url}")
    for url in result.already:
        click.echo(f"{backup}: {already} on {url}")
    _report_failed(result.failed)
    if not result.found:
        click.echo(f"awops: no backup {backup} on the targets", err=True)
    raise SystemExit(EXIT_OK if result.found and not result.failed else EXIT_PROBLEM)

"""``awops restore dynamodb``: ActingWeb's tables restored to one instant under a new prefix,
with the settings AWS leaves behind re-applied from the source tables and compared.

Exit codes: 0 every table restored, every setting re-applied and matching; 1 refused (a target
exists, no common instant, an unknown backup: nothing created) or a table or setting failed;
2 the command line or configuration is wrong (nothing asked of AWS).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from types import FrameType
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
from awops.errors import JobError
from awops.logs import setup_logging
from awops.text_table import table

logger = logging.getLogger(__name__)


@click.command("dynamodb")
@click.option(
    "--to-prefix",
    required=True,
    help="Restore into <PREFIX>_<suffix>; never the source prefix, never an existing table.",
)
@click.option(
    "--time",
    "time_text",
    default=None,
    metavar="ISO8601",
    help="Restore every table to this instant (with its zone, e.g. 2026-12-05T09:14:00Z); "
    "default: the latest instant every table can reach.",
)
@click.option(
    "--backup",
    "backup_arns",
    multiple=True,
    metavar="ARN",
    help="Restore from these on-demand backups (one per table) instead of PITR.",
)
@click.option(
    "--table",
    "suffixes",
    multiple=True,
    metavar="SUFFIX",
    help="Restore only these expected tables (e.g. --table attributes); default: all.",
)
@click.option(
    "--timeout-seconds",
    type=click.FloatRange(min=1),
    default=14400.0,
    show_default=True,
    help="Stop waiting after this long; restores still running go on in AWS and are reported.",
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.01),
    default=10.0,
    show_default=True,
    help="How often to look at the restores' progress.",
)
@click.option("--dry-run", is_flag=True, help="Check and print the plan; create nothing.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON document on stdout; logs on stderr."
)
@config_option
def restore_dynamodb_command(
    to_prefix: str,
    time_text: str | None,
    backup_arns: tuple[str, ...],
    suffixes: tuple[str, ...],
    timeout_seconds: float,
    poll_seconds: float,
    dry_run: bool,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Restore ActingWeb's DynamoDB tables into new tables under --to-prefix, all to one
    instant, then re-apply TTL, PITR, tags, streams, deletion protection, capacity and auto
    scaling from the source tables and compare every setting."""
    from awops.dynamodb_restore.errors import RestoreRefused, RestoreUsageError
    from awops.dynamodb_restore.plan import parse_request, plan_restore
    from awops.dynamodb_restore.restore import DynamoDBRestore

    config, _registry, _path = load_or_exit(config_path, ())
    try:
        request = parse_request(
            config.dynamodb, to_prefix, time_text, list(backup_arns), list(suffixes), time.time()
        )
    except RestoreUsageError as exc:
        click.echo(f"awops: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    setup_logging(config.logging.format, config.logging.level)
    for warning in request.warnings:
        logger.warning("%s", warning)
    stop_event = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    resources = Resources(config)
    try:
        aws = resources.aws
        client = aws.dynamodb()
        try:
            plan = plan_restore(client, aws.application_autoscaling, request)
        except (RestoreRefused, JobError) as exc:
            ignore_stop_signals()
            reasons = exc.reasons if isinstance(exc, RestoreRefused) else [str(exc)]
            _refused(reasons, as_json)
            raise SystemExit(EXIT_PROBLEM) from None
        if dry_run:
            ignore_stop_signals()
            _print_plan(plan, as_json)
            raise SystemExit(EXIT_OK)
        report = DynamoDBRestore(
            client,
            aws.application_autoscaling,
            plan,
            timeout_seconds=timeout_seconds,
            stop_event=stop_event,
            poll_seconds=poll_seconds,
        ).run()
    finally:
        resources.close()
    ignore_stop_signals()
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        _print_report(report)
    raise SystemExit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _refused(reasons: list[str], as_json: bool) -> None:
    if as_json:
        document = {
            "ok": False,
            "refused": True,
            "time": None,
            "tables": [],
            "existing_tables": [],
            "problems": reasons,
        }
        click.echo(json.dumps(document))
        return
    click.echo("awops: restore refused; nothing was created:", err=True)
    for reason in reasons:
        click.echo(f"  - {reason}", err=True)


def _when(plan: Any) -> str:
    from awops.dynamodb_restore._aws import iso

    return iso(plan.instant) if plan.instant is not None else "their backups"


def _print_plan(plan: Any, as_json: bool) -> None:
    from awops.dynamodb_restore._aws import iso

    if as_json:
        document = {
            "ok": True,
            "dry_run": True,
            "time": iso(plan.instant) if plan.instant is not None else None,
            "mode": plan.mode,
            "tables": [table_plan.as_json() for table_plan in plan.tables],
        }
        click.echo(json.dumps(document))
        return
    click.echo(f"would restore {len(plan.tables)} table(s) to {_when(plan)}:")
    rows = [[p.source, p.target, p.backup_arn or "PITR"] for p in plan.tables]
    click.echo(table(["SOURCE", "RESTORED", "FROM"], rows))


def _print_report(report: Any) -> None:
    plan = report.plan
    click.echo(f"restore of {plan.source_prefix}_* into {plan.to_prefix}_*, to {_when(plan)}")
    rows = []
    for outcome in report.tables:
        failed = [name for name, result in outcome.settings.items() if result != "ok"]
        differing = [row.setting for row in outcome.comparison if not row.match]
        if not outcome.settings:
            settings = "-"
        elif failed or differing:
            settings = "; ".join(
                part
                for part in (
                    f"not applied: {', '.join(failed)}" if failed else "",
                    f"differs: {', '.join(differing)}" if differing else "",
                )
                if part
            )
        else:
            settings = "all re-applied and matching"
        seconds = f"{outcome.restore_seconds:.0f}" if outcome.restore_seconds is not None else "-"
        rows.append([outcome.plan.source, outcome.plan.target, outcome.status, seconds, settings])
    click.echo(table(["SOURCE", "RESTORED", "STATUS", "SECONDS", "SETTINGS"], rows))
    for outcome in report.tables:
        if not outcome.comparison:
            continue
        click.echo(f"\n{outcome.plan.target} compared with {outcome.plan.source}:")
        comparison = [
            [row.setting, row.source, row.restored, "yes" if row.match else "NO"]
            for row in outcome.comparison
        ]
        click.echo(table(["SETTING", "SOURCE", "RESTORED", "MATCH"], comparison))
    problems = report.problems()
    if problems:
        click.echo("\nproblems:")
        for problem in problems:
            click.echo(f"  - {problem}")
    existing = report.existing
    click.echo(f"\ntables that exist now: {', '.join(existing) if existing else 'none'}")
    if report.stopped_by:
        click.echo(f"stopped ({report.stopped_by}); the source tables were not touched")
    if report.ok:
        click.echo(
            f"done: run ActingWeb on them with AWS_DB_PREFIX={plan.to_prefix} "
            "(docs/runbook.md: Restore DynamoDB on a bad day)"
        )
    else:
        click.echo("FAILED: see the problems above; the source tables were not touched")

"""``awops status``: each job's last and next run, read from a running daemon."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from awops.cli._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    config_option,
    load_or_exit,
)
from awops.text_table import table

SUMMARY_WIDTH = 100


@click.command("status")
@click.option(
    "--url",
    envvar="AWOPS_STATUS_URL",
    help="The daemon, e.g. http://127.0.0.1:9647 (else [metrics] addr of the configuration).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the /api/status document.")
@click.option(
    "--user",
    envvar="AWOPS_STATUS_USER",
    help="Basic auth user; the password comes from $AWOPS_STATUS_PASSWORD.",
)
@click.option(
    "--cacert",
    envvar="AWOPS_STATUS_CACERT",
    type=click.Path(dir_okay=False),
    help="CA certificate (PEM) that signed the daemon's TLS certificate.",
)
@click.option("--insecure", is_flag=True, help="HTTPS without checking the certificate.")
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.FloatRange(min=0.1, max=300),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the daemon.",
)
@config_option
def status_command(
    url: str | None,
    as_json: bool,
    user: str | None,
    cacert: str | None,
    insecure: bool,
    timeout_seconds: float,
    config_path: str | None,
) -> None:
    """Show each job's status, last and next run, and the newest backups, from the daemon.

    Exit codes: 0 the daemon answered and no job's last run failed; 1 a job's last run found
    a problem or failed, or no daemon answers; 2 usage or configuration error.
    """
    from awops.status.client import Credentials, StatusError, fetch_status, status_url, tls_context

    password = os.environ.get("AWOPS_STATUS_PASSWORD", "")
    if password and not user:
        _fail("AWOPS_STATUS_PASSWORD is set but --user is not")
    if user and not password:
        _fail(f"--user {user}: set the password in AWOPS_STATUS_PASSWORD")
    credentials = Credentials(user, password) if user else None
    try:
        base = url or _configured_url(config_path)
        target = status_url(base)
        context = tls_context(cacert, insecure) if target.startswith("https:") else None
        document = fetch_status(target, credentials, context, timeout_seconds)
    except StatusError as exc:
        click.echo(f"awops status: {exc}", err=True)
        raise SystemExit(EXIT_USAGE if exc.usage else EXIT_PROBLEM) from None
    jobs = [job for job in document["jobs"] if isinstance(job, dict)]
    failing = [job for job in jobs if job.get("status") in ("problem", "error")]
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(render_table(document, jobs, failing, target))
    raise SystemExit(EXIT_PROBLEM if failing else EXIT_OK)


def _configured_url(config_path: str | None) -> str:
    from awops.metrics.http import load_web_config
    from awops.status.client import default_url

    config, _registry, _path = load_or_exit(config_path)
    tls = False
    if config.metrics.web_config_file:
        tls = load_web_config(config.metrics.web_config_file).tls is not None
    return default_url(config, tls)


def _fail(message: str) -> None:
    click.echo(f"awops status: {message}", err=True)
    raise SystemExit(EXIT_USAGE)


def render_table(
    document: dict[str, Any], jobs: list[dict[str, Any]], failing: list[dict[str, Any]], url: str
) -> str:
    """The jobs (problems first, as the daemon sorts them) and the newest backup per target."""
    from awops.status.board import parse_time

    now = parse_time(document.get("generated_at")) or 0.0
    rows = []
    for job in jobs:
        summary = " ".join(str(job.get("summary") or "").split())
        if len(summary) > SUMMARY_WIDTH:
            summary = summary[: SUMMARY_WIDTH - 3] + "..."
        status = str(job.get("status") or "not run yet")
        if job.get("running_since"):
            status += " (running)"
        rows.append(
            [
                str(job.get("job", "")),
                status,
                _when(job.get("last_run"), now),
                _when(job.get("last_success"), now),
                _when(job.get("next_run"), now),
                _seconds(job.get("duration_seconds")),
                summary or "-",
            ]
        )
    verdict = (
        f"{len(failing)} of {len(jobs)} jobs need attention"
        if failing
        else f"all {len(jobs)} jobs healthy"
    )
    lines = [
        f"awops {document.get('version', '?')} on {document.get('instance', '?')}: {verdict}",
        "",
        table(
            ["JOB", "STATUS", "LAST RUN", "LAST SUCCESS", "NEXT RUN", "DURATION", "SUMMARY"],
            rows,
        )
        if rows
        else "no job is scheduled",
    ]
    backups = [b for b in document.get("backups") or [] if isinstance(b, dict)]
    if backups:
        headers = ["TARGET", "NEWEST BACKUP", "CREATED", "VERIFIED"]
        lines += ["", table(headers, _backups(backups, now))]
    lines += ["", f"page: {url.removesuffix('/api/status')}/"]
    return "\n".join(lines)


def _backups(backups: list[dict[str, Any]], now: float) -> list[list[str]]:
    rows = []
    for backup in backups:
        verified = backup.get("verified")
        if isinstance(verified, dict):
            word = "ok" if verified.get("ok") is True else "FAILED"
            verified_text = f"{word} {_when(verified.get('at'), now)}"
        else:
            verified_text = "not yet"
        rows.append(
            [
                str(backup.get("target", "")),
                str(backup.get("id") or backup.get("error") or "none known"),
                _when(backup.get("created"), now),
                verified_text,
            ]
        )
    return rows


def _when(value: Any, now: float) -> str:
    from awops.status.board import parse_time, relative_time

    moment = parse_time(value)
    return "-" if moment is None else relative_time(moment - now)


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"

from __future__ import annotations

import json
import signal
from types import FrameType

import click

from awops.cli._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    complete_job_names,
    config_option,
    fail_usage,
    ignore_stop_signals,
    load_or_exit,
)
from awops.context import Resources
from awops.errors import RegistryError
from awops.logs import setup_logging
from awops.metrics import MetricsBase, NullMetrics
from awops.result import JobResult
from awops.runner import select_jobs
from awops.text_table import table
from awops.wiring import new_runner


@click.command("run-once")
@click.argument("jobs", nargs=-1, shell_complete=complete_job_names)
@click.option("--all", "run_all", is_flag=True, help="Run every enabled job.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON document on stdout; logs on stderr."
)
@click.option("--dry-run", is_flag=True, help="Jobs that change data report and change nothing.")
@config_option
def run_once_command(
    jobs: tuple[str, ...], run_all: bool, as_json: bool, dry_run: bool, config_path: str | None
) -> None:
    """Run the named jobs (or all enabled ones with --all) now, once, in order, and exit."""
    if not jobs and not run_all:
        if as_json:
            fail_usage("name at least one job, or pass --all", as_json)
        raise click.UsageError("name at least one job, or pass --all")
    config, registry, _path = load_or_exit(config_path, None if run_all else jobs, as_json)
    try:
        names = select_jobs(config, registry, jobs, run_all)
    except RegistryError as exc:
        fail_usage(str(exc), as_json)
    metrics: MetricsBase = NullMetrics()
    resources = Resources(config)
    if config.metrics.pushgateway_url:
        from awops.metrics import Metrics
        from awops.metrics.pg_pool import PgPoolCollector

        metrics = Metrics()
        PgPoolCollector(resources.pool_totals, registry=metrics.registry)
    # Runs are given no slot: a run-once never overlaps a daemon's (or another CronJob's) run
    # of the same job, but an operator's run is not refused for a slot already run.
    runner = new_runner(config, registry, metrics, resources, jobs=names)
    setup_logging(config.logging.format, config.logging.level)

    # The same bound as the daemon's: the running job gets shutdown_timeout_seconds to wind
    # up, is then cancelled (its child processes killed, its queries cancelled) and abandoned
    # after a short grace; the jobs after it are not started.
    stop_timeout_seconds = config.daemon.shutdown_timeout_seconds

    def on_stop(signum: int, frame: FrameType | None) -> None:
        runner.request_stop(cancel_after_seconds=stop_timeout_seconds)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    results: list[JobResult] = []
    try:
        for name in names:
            results.append(runner.run(name, dry_run=dry_run))
    finally:
        resources.close()
    ignore_stop_signals()
    if config.metrics.pushgateway_url:
        from awops.metrics import Metrics
        from awops.metrics.push import push_run_metrics

        assert isinstance(metrics, Metrics)
        push_run_metrics(config, metrics)

    ok = not any(result.status.is_failure for result in results)
    if as_json:
        document = {"ok": ok, "jobs": [result.as_json() for result in results]}
        click.echo(json.dumps(document, default=str))
    elif results:
        rows = [[r.job, str(r.status), f"{r.duration_seconds:.2f}s", r.summary] for r in results]
        click.echo(table(["JOB", "STATUS", "DURATION", "SUMMARY"], rows))
    else:
        click.echo("no enabled jobs to run")
    raise SystemExit(EXIT_OK if ok else EXIT_PROBLEM)

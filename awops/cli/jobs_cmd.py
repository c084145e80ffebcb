from __future__ import annotations

import click

from awops.cli._common import (
    config_option,
    load_or_exit,
)
from awops.text_table import table


@click.command("jobs")
@config_option
def jobs_command(config_path: str | None) -> None:
    """List every job: enabled, backend, schedule and next run."""
    config, registry, _path = load_or_exit(config_path)
    from awops.triggers import next_run

    rows = []
    for job_class in registry:
        job = config.jobs[job_class.name]
        active = config.job_is_active(job_class.name, job_class.backend)
        unconfigured = job_class.unconfigured_reason(job.options, config) if active else None
        if unconfigured:
            next_text = f"- ({unconfigured})"
        elif active:
            upcoming = next_run(job.schedule)
            next_text = upcoming.strftime("%Y-%m-%d %H:%M:%SZ") if upcoming else "-"
        elif not job.enabled:
            next_text = "- (disabled)"
        else:
            next_text = "- (backend not configured)"
        rows.append(
            [
                job_class.name,
                "yes" if job.enabled else "no",
                job_class.backend,
                job.schedule.text,
                next_text,
            ]
        )
    backends = ", ".join(sorted(config.backends))
    click.echo(f"backends: {backends} ({config.backends_origin})\n")
    click.echo(table(["JOB", "ENABLED", "BACKEND", "SCHEDULE", "NEXT RUN"], rows))

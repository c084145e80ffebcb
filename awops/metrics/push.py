"""Push ``run-once`` metrics to a Pushgateway so a CronJob's results outlive its pod.

The Pushgateway sets the ``job`` label of every pushed series to its group's ``job``, and awops'
job series carry the awops job name in ``job`` (``awops_job_healthy{job="pg-backup"}``). So the
push is split into groups: the series of each awops job go to ``/job/<awops job>/instance/<i>``
and keep their ``job`` label; every other series (``awops_build_info``, ``awops_pg_*``,
``awops_backup_*``) goes to ``/job/awops/instance/<i>``. Scraped with ``honor_labels: true``,
a pushed run then looks exactly like the daemon's.

A job's group is replaced on each push (PUT: it holds that job's last run); the shared group
is merged (POST: a backup-verify run keeps the backup's size series of the same instance).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator

from prometheus_client import push_to_gateway, pushadd_to_gateway
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from awops.config import Config
from awops.logs import scrubber
from awops.metrics import Metrics, catalogue

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_SECONDS = 10.0
SHARED_GROUP_JOB = "awops"


def record_schedule_periods(metrics: Metrics, config: Config, jobs: Iterable[str]) -> None:
    """``awops_job_schedule_period_seconds{job}``: what "no success in twice its schedule" needs.

    Set by the daemon for its scheduled jobs and by a pushing ``run-once`` for the jobs it ran
    (a CronJob should then set the job's ``schedule`` to its own). Replaces earlier values, so
    a job disabled by a reload stops being expected.
    """
    # APScheduler's triggers, only when periods are recorded (the daemon has them loaded).
    from awops.triggers import period_seconds

    gauge = metrics.series(catalogue.JOB_SCHEDULE_PERIOD)
    gauge.clear()
    for job in jobs:
        gauge.labels(job=job).set(period_seconds(config.jobs[job].schedule))


class _Group(Collector):
    """The families of ``source`` restricted to samples whose ``job`` label is ``job``.

    ``job=None`` selects the families that have no ``job`` label at all.
    """

    def __init__(self, families: list[Metric], job: str | None) -> None:
        self._families = families
        self._job = job

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            if self._job is None:
                if not any("job" in sample.labels for sample in family.samples):
                    yield family
                continue
            samples = [s for s in family.samples if s.labels.get("job") == self._job]
            if samples:
                subset = Metric(family.name, family.documentation, family.type, family.unit)
                subset.samples = samples
                yield subset


def push_groups(registry: CollectorRegistry) -> dict[str, _Group]:
    """Group job name (``awops`` for the shared group) to what is pushed under it."""
    families = list(registry.collect())
    groups = {job: _Group(families, job) for job in sorted(_job_names(families))}
    groups[SHARED_GROUP_JOB] = _Group(families, None)
    return groups


def _job_names(families: Iterable[Metric]) -> set[str]:
    return {s.labels["job"] for family in families for s in family.samples if "job" in s.labels}


def _as_registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def push_run_metrics(config: Config, metrics: Metrics) -> bool:
    """Push every group; a failed push is logged and never changes the exit code."""
    instance = config.daemon.instance or socket.gethostname()
    ran = _job_names(metrics.registry.collect())
    record_schedule_periods(metrics, config, sorted(ran & set(config.jobs)))
    groups = push_groups(metrics.registry)
    for job, group in groups.items():
        push = pushadd_to_gateway if job == SHARED_GROUP_JOB else push_to_gateway
        try:
            push(
                config.metrics.pushgateway_url,
                job=job,
                grouping_key={"instance": instance},
                registry=_as_registry(group),
                timeout=PUSH_TIMEOUT_SECONDS,
            )
        except Exception as exc:
            # One failure is enough to know the gateway is unwell: do not wait on it again.
            logger.warning(
                "push of the %s group to the Pushgateway failed, not pushing the rest: %s",
                job,
                scrubber.scrub(str(exc)),
            )
            return False
    logger.info(
        "pushed metrics to the Pushgateway (instance %s, groups %s)",
        instance,
        ", ".join(groups),
    )
    return True

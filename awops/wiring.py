"""How a :class:`JobRunner` is put together, the same way for the daemon and ``awops run-once``.

Here, and only here: the log scrubber learns the configuration's secrets, the rule of which jobs
take the job lock, and the lock's construction. The lock module is imported only when a job
the runner may run takes the lock, so a ``run-once`` of read-only checks (what cron and
CronJobs start most often) does not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from awops.logs import scrubber
from awops.runner import JobRunner, RunObserver

if TYPE_CHECKING:
    from awops.config import Config, LockSettings
    from awops.context import ActiveRuns, Resources
    from awops.locks import Locks
    from awops.metrics import MetricsBase
    from awops.registry import JobRegistry


def takes_lock(settings: LockSettings, changes_data: bool) -> bool:
    """Whether the runs of a job take the job lock under ``[lock]``.

    None do with ``backend = "none"``; otherwise every job that changes data does, and with
    ``scope = "all"`` the read-only checks too (else each replica runs them, so every
    replica's ``/metrics`` stays fresh).
    """
    if settings.backend == "none":
        return False
    return changes_data or settings.scope == "all"


def new_runner(
    config: Config,
    registry: JobRegistry,
    metrics: MetricsBase,
    resources: Resources,
    *,
    jobs: Iterable[str] | None = None,
    observers: Sequence[RunObserver] | None = None,
    runs: ActiveRuns | None = None,
) -> JobRunner:
    """A runner for ``config``, with the job lock when one of the jobs it may run takes it.

    ``jobs`` names the only jobs the runner will run (``run-once``'s selection); None means
    any configured job (the daemon). The daemon hands each scheduled run its slot, so a slot
    runs once across replicas; ``run-once`` passes none, so its run never overlaps another
    replica's run of the job but is not refused for a slot already run. ``runs`` is shared by
    every runner the daemon builds, so one stop request reaches runs of replaced runners too.
    """
    scrubber.update(config.secrets())
    locks: Locks | None = None
    names = config.jobs if jobs is None else jobs
    if any(takes_lock(config.lock, registry.get(name).changes_data) for name in names):
        # Lock backends are loaded only for a run that takes a lock.
        from awops.locks import Locks

        locks = Locks(
            config.lock, lambda: resources.pg, lambda: resources.aws, config.dynamodb.prefix
        )
    return JobRunner(
        config, registry, metrics, resources, observers=observers, locks=locks, runs=runs
    )

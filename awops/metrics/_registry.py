"""All of awops' series live in one :class:`Metrics`, built on a registry the caller passes.

Jobs ask for their series by name (``metrics.gauge("awops_pg_up", ...)``); asking twice returns
the same series, so a job module declares its metrics where it uses them and tests read them
from a fresh ``CollectorRegistry`` with ``get_sample_value``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from awops import __version__
from awops.metrics._base import MetricsBase
from awops.result import JobResult, Status

M = TypeVar("M", Counter, Gauge, Histogram)

# Job durations run from a 50 ms health ping to an hours-long backup.
JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 10800)


class Metrics(MetricsBase):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No <name>_created series: each would repeat its counter's or histogram's help on
        # /metrics and in every push, and awops records its own timestamps. prometheus_client
        # holds this process-wide and reads it at every collect, so it covers the Pushgateway
        # push too; exporters built on it turn it off the same way.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._series: dict[str, Any] = {}
        self.gauge("awops_build_info", "awops build, always 1", ["version"]).labels(
            version=__version__
        ).set(1)
        self.job_runs = self.counter(
            "awops_job_runs_total", "Job runs by final status", ["job", "status"]
        )
        self.job_duration = self.histogram(
            "awops_job_duration_seconds", "Wall time of job runs", ["job"], JOB_DURATION_BUCKETS
        )
        self.job_last_run = self.gauge(
            "awops_job_last_run_timestamp_seconds", "When the job last finished a run", ["job"]
        )
        self.job_last_success = self.gauge(
            "awops_job_last_success_timestamp_seconds",
            "When the job last finished with status ok",
            ["job"],
        )
        self.job_healthy = self.gauge(
            "awops_job_healthy", "1 when the job's last run was ok, 0 when it was not", ["job"]
        )

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return self._get_or_create(Counter, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get_or_create(Gauge, name, documentation, labels)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._get_or_create(Histogram, name, documentation, labels, buckets=buckets)

    def _get_or_create(
        self,
        kind: type[M],
        name: str,
        documentation: str,
        labels: Sequence[str],
        **kwargs: Any,
    ) -> M:
        with self._lock:
            existing = self._series.get(name)
            if existing is not None:
                if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labels):
                    raise ValueError(f"metric {name} is already defined differently")
                return existing
            # prometheus_client appends _total itself; the series keep the contract's names.
            metric_name = name.removesuffix("_total") if kind is Counter else name
            series = kind(
                metric_name, documentation, list(labels), registry=self.registry, **kwargs
            )
            self._series[name] = series
            return series

    def declare_job(self, job: str) -> None:
        """Create a job's series at zero so rate() and absent() work before its first run."""
        for status in Status:
            self.job_runs.labels(job=job, status=str(status))
        self.job_duration.labels(job=job)

    def record_run(self, result: JobResult, finished_at: float) -> None:
        self.job_runs.labels(job=result.job, status=str(result.status)).inc()
        if result.status is Status.SKIPPED:
            return
        self.job_duration.labels(job=result.job).observe(result.duration_seconds)
        self.job_last_run.labels(job=result.job).set(finished_at)
        healthy = result.status is Status.OK
        self.job_healthy.labels(job=result.job).set(1 if healthy else 0)
        if healthy:
            self.job_last_success.labels(job=result.job).set(finished_at)

"""All of awops' series live in one :class:`Metrics`, built on a registry the caller passes.

Jobs ask for their series by the spec :mod:`awops.metrics.catalogue` declares
(``metrics.series(catalogue.PG_UP)``); asking twice returns the same series, and tests read them
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
from awops.metrics import catalogue
from awops.metrics._base import MetricsBase
from awops.result import JobResult, Status

M = TypeVar("M", Counter, Gauge, Histogram)


class Metrics(MetricsBase):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No <name>_created series: each would repeat its counter's or histogram's help on
        # /metrics and in every push, and awops records its own timestamps. prometheus_client
        # holds this process-wide and reads it at every collect, so it covers the Pushgateway
        # push too; exporters built on it turn it off the same way.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._series: dict[str, Counter | Gauge | Histogram] = {}
        self.series(catalogue.BUILD_INFO).labels(version=__version__).set(1)
        self.job_runs = self.series(catalogue.JOB_RUNS)
        self.job_duration = self.series(catalogue.JOB_DURATION)
        self.job_last_run = self.series(catalogue.JOB_LAST_RUN)
        self.job_last_success = self.series(catalogue.JOB_LAST_SUCCESS)
        self.job_healthy = self.series(catalogue.JOB_HEALTHY)

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

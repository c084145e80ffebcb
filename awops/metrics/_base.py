"""The interface jobs record through, with a do-nothing version that needs no prometheus_client.

``awops run-once`` without a Pushgateway has nobody to read its metrics, so it records into
:class:`NullMetrics` and skips importing prometheus_client: cron pays start-up on every run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import overload

from awops.metrics._series import (
    CounterSeries,
    CounterSpec,
    GaugeSeries,
    GaugeSpec,
    HistogramSeries,
    HistogramSpec,
    SeriesSpec,
)
from awops.result import JobResult


class MetricsBase(ABC):
    """Where a run records its series and the runner its results.

    awops code asks for a series by its spec in :mod:`awops.metrics.catalogue`
    (``metrics.series(catalogue.PG_UP).set(1)``); asking twice returns the same series.
    """

    @overload
    def series(self, spec: CounterSpec) -> CounterSeries: ...

    @overload
    def series(self, spec: GaugeSpec) -> GaugeSeries: ...

    @overload
    def series(self, spec: HistogramSpec) -> HistogramSeries: ...

    def series(self, spec: SeriesSpec) -> CounterSeries | GaugeSeries | HistogramSeries:
        """The series ``spec`` declares, created on first use."""
        if isinstance(spec, CounterSpec):
            return self.counter(spec.name, spec.help, spec.labels)
        if isinstance(spec, GaugeSpec):
            return self.gauge(spec.name, spec.help, spec.labels)
        return self.histogram(spec.name, spec.help, spec.labels, spec.buckets)

    @abstractmethod
    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> CounterSeries:
        """The counter ``name`` (with its ``_total``); prefer :meth:`series`."""

    @abstractmethod
    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeSeries:
        """The gauge ``name``; prefer :meth:`series`."""

    @abstractmethod
    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = (),
    ) -> HistogramSeries:
        """The histogram ``name``; prefer :meth:`series`."""

    @abstractmethod
    def declare_job(self, job: str) -> None:
        """Create a job's series at zero so rate() and absent() work before its first run."""

    @abstractmethod
    def record_run(self, result: JobResult, finished_at: float) -> None:
        """Count a finished run and set the job's last-run series."""


class _NullSeries:
    """Every kind of series, recording nothing."""

    def labels(self, *values: str, **labels: str) -> _NullSeries:
        return self

    def set(self, value: float) -> None:
        pass

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set_to_current_time(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def remove(self, *values: str) -> None:
        pass


_NULL = _NullSeries()


class NullMetrics(MetricsBase):
    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> CounterSeries:
        return _NULL

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeSeries:
        return _NULL

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = (),
    ) -> HistogramSeries:
        return _NULL

    def declare_job(self, job: str) -> None:
        pass

    def record_run(self, result: JobResult, finished_at: float) -> None:
        pass

"""The interface jobs record through, with a do-nothing version that needs no prometheus_client.

``awops run-once`` without a Pushgateway has nobody to read its metrics, so it records into
:class:`NullMetrics` and skips importing prometheus_client: cron pays start-up on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from awops.result import JobResult


class MetricsBase:
    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
        raise NotImplementedError

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
        raise NotImplementedError

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = (),
    ) -> Any:
        raise NotImplementedError

    def declare_job(self, job: str) -> None:
        raise NotImplementedError

    def record_run(self, result: JobResult, finished_at: float) -> None:
        raise NotImplementedError


class _NullSeries:
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
    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
        return _NULL

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
        return _NULL

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = (),
    ) -> Any:
        return _NULL

    def declare_job(self, job: str) -> None:
        pass

    def record_run(self, result: JobResult, finished_at: float) -> None:
        pass

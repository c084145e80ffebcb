"""What a series is, as awops declares it (a spec) and as a job records into it (a series).

The specs are frozen values, declared once in :mod:`awops.metrics.catalogue`. The series
protocols are the part of prometheus_client's ``Counter``, ``Gauge`` and ``Histogram`` awops
uses; those classes satisfy them as they are, and so does the do-nothing series of
:class:`~awops.metrics.NullMetrics`. Neither needs prometheus_client to be imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, Self


@dataclass(frozen=True)
class _Spec:
    name: str  # a counter's with its _total, as it is scraped
    help: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class CounterSpec(_Spec):
    kind: ClassVar[Literal["counter"]] = "counter"


@dataclass(frozen=True)
class GaugeSpec(_Spec):
    kind: ClassVar[Literal["gauge"]] = "gauge"


@dataclass(frozen=True, kw_only=True)
class HistogramSpec(_Spec):
    kind: ClassVar[Literal["histogram"]] = "histogram"
    buckets: tuple[float, ...]


SeriesSpec = CounterSpec | GaugeSpec | HistogramSpec


class CounterSeries(Protocol):
    def labels(self, *values: str, **labels: str) -> Self: ...

    def inc(self, amount: float = 1) -> None: ...

    def remove(self, *values: str) -> None: ...

    def clear(self) -> None: ...


class GaugeSeries(Protocol):
    def labels(self, *values: str, **labels: str) -> Self: ...

    def set(self, value: float) -> None: ...

    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...

    def set_to_current_time(self) -> None: ...

    def remove(self, *values: str) -> None: ...

    def clear(self) -> None: ...


class HistogramSeries(Protocol):
    def labels(self, *values: str, **labels: str) -> Self: ...

    def observe(self, amount: float) -> None: ...

    def remove(self, *values: str) -> None: ...

    def clear(self) -> None: ...

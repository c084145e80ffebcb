"""Prometheus metrics: the registry wrapper, the HTTP endpoint and the Pushgateway client.

Every series awops exports is declared once in :mod:`awops.metrics.catalogue`.

``Metrics`` is imported lazily (it needs prometheus_client); ``NullMetrics`` does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awops.metrics._base import MetricsBase, NullMetrics
from awops.metrics._series import (
    CounterSeries,
    CounterSpec,
    GaugeSeries,
    GaugeSpec,
    HistogramSeries,
    HistogramSpec,
    SeriesSpec,
)

if TYPE_CHECKING:
    from awops.metrics._registry import Metrics

__all__ = [
    "CounterSeries",
    "CounterSpec",
    "GaugeSeries",
    "GaugeSpec",
    "HistogramSeries",
    "HistogramSpec",
    "Metrics",
    "MetricsBase",
    "NullMetrics",
    "SeriesSpec",
]


def __getattr__(name: str) -> Any:
    if name == "Metrics":
        from awops.metrics._registry import Metrics

        return Metrics
    raise AttributeError(name)

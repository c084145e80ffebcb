"""Prometheus metrics: the registry wrapper, the HTTP endpoint and the Pushgateway client.

``Metrics`` is imported lazily (it needs prometheus_client); ``NullMetrics`` does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awops.metrics._base import MetricsBase, NullMetrics

if TYPE_CHECKING:
    from awops.metrics._registry import Metrics

__all__ = ["Metrics", "MetricsBase", "NullMetrics"]


def __getattr__(name: str) -> Any:
    if name == "Metrics":
        from awops.metrics._registry import Metrics

        return Metrics
    raise AttributeError(name)

"""psycopg_pool's statistics, read when Prometheus scrapes (as ``ProcessCollector`` reads /proc).

The counters are psycopg_pool's own (``get_stats()``), summed by
:class:`~awops.pool_stats.PoolTotals` over the pools the process opened, so they keep counting
across a reload that replaces the pool. Nothing is exported before a first pool was opened: a
process without PostgreSQL has no pool series.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from awops.pool_stats import PoolTotals

# psycopg_pool get_stats() counter -> (awops_pg_pool_<name>_total, help, scale to base units)
POOL_COUNTER_SERIES = {
    "requests_num": ("requests", "Requests for a pooled connection", 1.0),
    "requests_queued": ("requests_queued", "Requests that had to wait for a connection", 1.0),
    "requests_errors": ("requests_errors", "Requests that failed (timeout, too many waiting)", 1.0),
    "requests_wait_ms": ("requests_wait_seconds", "Time requests spent waiting", 0.001),
    "connections_errors": ("connection_errors", "Failed attempts to open a connection", 1.0),
    "connections_lost": ("connections_lost", "Pooled connections found broken", 1.0),
}


class PgPoolCollector(Collector):
    """``awops_pg_pool_*_total`` and the pool's configured bounds, from ``totals`` at scrape."""

    def __init__(self, totals: PoolTotals, registry: CollectorRegistry | None = None) -> None:
        self.totals = totals
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry checks them for clashes without reading a pool.
        for name, doc, _ in POOL_COUNTER_SERIES.values():
            yield CounterMetricFamily(f"awops_pg_pool_{name}_total", doc)
        yield from self._bounds(0, 0)

    def collect(self) -> Iterable[Metric]:
        sizes = self.totals.sizes()
        if sizes is None:
            return
        counters = self.totals.counters()
        for key, (name, doc, scale) in POOL_COUNTER_SERIES.items():
            yield CounterMetricFamily(
                f"awops_pg_pool_{name}_total", doc, value=counters[key] * scale
            )
        yield from self._bounds(*sizes)

    @staticmethod
    def _bounds(min_size: int, max_size: int) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "awops_pg_pool_min_connections",
            "Connections the pool keeps open (pool_min_size of the pool in use)",
            value=min_size,
        )
        yield GaugeMetricFamily(
            "awops_pg_pool_max_connections",
            "Connections the pool opens at most (pool_max_size of the pool in use)",
            value=max_size,
        )

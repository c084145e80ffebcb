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

from awops.metrics import catalogue
from awops.pool_stats import PoolTotals

# psycopg_pool get_stats() counter -> (its series, scale to base units)
POOL_COUNTER_SERIES = {
    "requests_num": (catalogue.PG_POOL_REQUESTS, 1.0),
    "requests_queued": (catalogue.PG_POOL_REQUESTS_QUEUED, 1.0),
    "requests_errors": (catalogue.PG_POOL_REQUESTS_ERRORS, 1.0),
    "requests_wait_ms": (catalogue.PG_POOL_REQUESTS_WAIT, 0.001),
    "connections_errors": (catalogue.PG_POOL_CONNECTION_ERRORS, 1.0),
    "connections_lost": (catalogue.PG_POOL_CONNECTIONS_LOST, 1.0),
}


class PgPoolCollector(Collector):
    """``awops_pg_pool_*_total`` and the pool's configured bounds, from ``totals`` at scrape."""

    def __init__(self, totals: PoolTotals, registry: CollectorRegistry | None = None) -> None:
        self.totals = totals
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry checks them for clashes without reading a pool.
        for spec, _ in POOL_COUNTER_SERIES.values():
            yield CounterMetricFamily(spec.name, spec.help)
        yield from self._bounds(0, 0)

    def collect(self) -> Iterable[Metric]:
        sizes = self.totals.sizes()
        if sizes is None:
            return
        counters = self.totals.counters()
        for key, (spec, scale) in POOL_COUNTER_SERIES.items():
            yield CounterMetricFamily(spec.name, spec.help, value=counters[key] * scale)
        yield from self._bounds(*sizes)

    @staticmethod
    def _bounds(min_size: int, max_size: int) -> Iterable[Metric]:
        for spec, value in (
            (catalogue.PG_POOL_MIN_CONNECTIONS, min_size),
            (catalogue.PG_POOL_MAX_CONNECTIONS, max_size),
        ):
            yield GaugeMetricFamily(spec.name, spec.help, value=value)

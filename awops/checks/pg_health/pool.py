"""awops' own connection pool as ``pg-health`` sees it: psycopg_pool's statistics.

The pool's state (size, idle, waiting) is read before the check asks for its connection, so a
check that has to wait does not count itself among the waiters; psycopg_pool's running counters
are brought forward into ``awops_pg_pool_<name>_total`` after the check's own request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.metrics import MetricsBase
    from awops.pg import PgConnector

# psycopg_pool get_stats() counters exported as awops_pg_pool_<name>_total, with the factor to
# base units. get_stats() (not pop_stats()) leaves them running for the pool's life, so nothing
# else loses its figures.
_POOL_COUNTERS = {
    "requests_num": (catalogue.PG_POOL_REQUESTS, 1),
    "requests_queued": (catalogue.PG_POOL_REQUESTS_QUEUED, 1),
    "requests_errors": (catalogue.PG_POOL_REQUESTS_ERRORS, 1),
    "requests_wait_ms": (catalogue.PG_POOL_REQUESTS_WAIT, 0.001),
    "connections_errors": (catalogue.PG_POOL_CONNECTION_ERRORS, 1),
    "connections_lost": (catalogue.PG_POOL_CONNECTIONS_LOST, 1),
}


class PoolSeries:
    """The pool's series; asking the registry again returns the same ones."""

    def __init__(self, metrics: MetricsBase) -> None:
        self.pool = metrics.series(catalogue.PG_POOL_CONNECTIONS)
        self.pool_wait = metrics.series(catalogue.PG_POOL_WAIT)
        self.pool_counters = {
            key: metrics.series(spec) for key, (spec, _) in _POOL_COUNTERS.items()
        }


def record_pool(
    series: PoolSeries,
    findings: Findings,
    options: PgHealthOptions,
    pg: PgConnector,
    before: dict[str, int],
    waited_seconds: float,
    exhausted: bool,
) -> None:
    """Record the pool as it stood ``before`` the check's request, and that request's wait.

    ``exhausted``: the request gave up after ``max_pool_wait_seconds``.
    """
    stats = before
    pool = {
        "size": stats.get("pool_size", 0),
        "idle": stats.get("pool_available", 0),
        "waiting": stats.get("requests_waiting", 0),
        "min": stats.get("pool_min", pg.settings.pool_min_size),
        "max": stats.get("pool_max", pg.settings.pool_max_size),
    }
    for state, value in pool.items():
        series.pool.labels(state=state).set(value)
    stats = pg.pool_stats()  # the counters as they stand after this run's own request
    for key, counter in series.pool_counters.items():
        _advance_counter(counter, stats.get(key, 0) * _POOL_COUNTERS[key][1])
    limit, waited = options.max_pool_wait_seconds, waited_seconds
    series.pool_wait.set(waited)
    findings.details["pool"] = {
        **pool,
        "requests_errors": stats.get("requests_errors", 0),
        "connections_lost": stats.get("connections_lost", 0),
        "requests_wait_seconds": stats.get("requests_wait_ms", 0) / 1000,
    }
    findings.details.update(pool_wait_seconds=round(waited, 6), max_pool_wait_seconds=limit)
    waiting = f" ({pool['waiting']} requests waiting)" if pool["waiting"] else ""
    if exhausted:
        findings.problems.append(
            f"pool of {pool['size']}/{pool['max']} gave no connection within "
            f"max_pool_wait_seconds {limit:g}{waiting}"
        )
    elif waited > limit:
        findings.problems.append(
            f"pool wait {waited:.2f} s above max_pool_wait_seconds {limit:g}{waiting}"
        )


def _advance_counter(counter: Any, total: float) -> None:
    """Bring a counter up to ``total``, a running count kept elsewhere (psycopg_pool's)."""
    collect = getattr(counter, "collect", None)
    if collect is None:  # NullMetrics
        return
    current = next(
        (s.value for family in collect() for s in family.samples if s.name.endswith("_total")),
        0.0,
    )
    if total > current:
        counter.inc(total - current)

"""awops' own connection pool as ``pg-health`` sees it: psycopg_pool's statistics.

The pool's state (size, idle, waiting) is read before the check asks for its connection, so a
check that has to wait does not count itself among the waiters. psycopg_pool's running counters
(``awops_pg_pool_<name>_total``) are not the check's: :mod:`awops.metrics.pg_pool` reads them
when Prometheus scrapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.metrics import MetricsBase
    from awops.pg import PgConnector


class PoolSeries:
    """The pool's series; asking the registry again returns the same ones."""

    def __init__(self, metrics: MetricsBase) -> None:
        self.pool = metrics.series(catalogue.PG_POOL_CONNECTIONS)
        self.pool_wait = metrics.series(catalogue.PG_POOL_WAIT)


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
    # The bounds are configuration, not states: the pool collector exports them as
    # awops_pg_pool_min_connections and awops_pg_pool_max_connections.
    for state in ("size", "idle", "waiting"):
        series.pool.labels(state=state).set(pool[state])
    stats = pg.pool_stats()  # the counters as they stand after this run's own request
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

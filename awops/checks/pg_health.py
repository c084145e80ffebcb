"""``pg-health``: is PostgreSQL reachable, how fast does it answer, how is the pool doing."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from awops.abc import Job
from awops.errors import BackendUnavailable
from awops.registry import register
from awops.result import Outcome
from awops.settings import setting

logger = logging.getLogger(__name__)


@dataclass
class PgHealthOptions:
    max_ping_seconds: float = setting(0.5, minimum=0, doc="ping slower than this is a problem")


@register
class PgHealth(Job):
    name = "pg-health"
    backend = "postgresql"
    description = "pool stats, ping latency and server figures against thresholds"
    default_schedule = "every 60s"
    default_timeout_seconds = 50.0
    Options = PgHealthOptions

    def _run(self) -> Outcome:
        metrics = self.context.metrics
        up = metrics.gauge("awops_pg_up", "1 when the last pg-health reached PostgreSQL")
        ping_gauge = metrics.gauge(
            "awops_pg_ping_seconds", "Round trip of SELECT 1 through the pool"
        )
        pool_gauge = metrics.gauge(
            "awops_pg_pool_connections", "psycopg_pool statistics by state", ["state"]
        )
        pg = self.context.pg
        try:
            with pg.connection() as conn:
                started = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                ping_seconds = time.perf_counter() - started
        except BackendUnavailable:
            up.set(0)
            raise
        up.set(1)
        ping_gauge.set(ping_seconds)
        stats = pg.pool_stats()
        pool = {
            "size": stats.get("pool_size", 0),
            "idle": stats.get("pool_available", 0),
            "waiting": stats.get("requests_waiting", 0),
            "max": pg.settings.pool_max_size,
        }
        for state, value in pool.items():
            pool_gauge.labels(state=state).set(value)
        details = {
            "ping_seconds": round(ping_seconds, 6),
            "max_ping_seconds": self.options.max_ping_seconds,
            "pool": pool,
        }
        summary = f"PostgreSQL {pg.target} answered in {ping_seconds * 1000:.1f} ms"
        if ping_seconds > self.options.max_ping_seconds:
            return Outcome.problem(
                f"ping {ping_seconds * 1000:.0f} ms above max_ping_seconds "
                f"{self.options.max_ping_seconds:g}",
                **details,
            )
        return Outcome.ok(summary, **details)

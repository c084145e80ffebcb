"""psycopg_pool's running counters, summed over every pool a process opens.

psycopg_pool counts requests, waits and errors per pool, from the pool's creation. A reload that
changes ``[postgresql]`` replaces the pool, so the process' totals are those of the pools still
open plus those of the pools it has closed: :class:`PoolTotals` keeps the latter as a base, so
a total read from it never goes backwards. Pure Python: no psycopg, no prometheus_client.
"""

from __future__ import annotations

import threading
from typing import Protocol

# psycopg_pool get_stats() keys that are counters (the others are the pool's present state).
POOL_COUNTERS = (
    "requests_num",
    "requests_queued",
    "requests_errors",
    "requests_wait_ms",
    "connections_errors",
    "connections_lost",
)


class StatsSource(Protocol):
    """What a psycopg_pool ``ConnectionPool`` offers here."""

    def get_stats(self) -> dict[str, int]: ...


class PoolTotals:
    """The counters of the pools a process opened, and the sizes of the latest one.

    :class:`~awops.pg.PgConnector` tells it of each pool it opens and closes; the daemon hands
    one to every :class:`~awops.context.Resources` it builds, so the pool a reload replaces
    keeps counting in the totals while its last runs finish, and its figures stay in once it
    is closed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[StatsSource] = []
        self._closed = dict.fromkeys(POOL_COUNTERS, 0)
        self._sizes: tuple[int, int] | None = None

    def opened(self, pool: StatsSource) -> None:
        with self._lock:
            self._open.append(pool)
            stats = pool.get_stats()
            self._sizes = (stats.get("pool_min", 0), stats.get("pool_max", 0))

    def closed(self, pool: StatsSource) -> None:
        """``pool`` was closed: its counters, final now, join the base."""
        with self._lock:
            if pool not in self._open:
                return
            self._open.remove(pool)
            stats = pool.get_stats()
            for key in POOL_COUNTERS:
                self._closed[key] += stats.get(key, 0)

    def counters(self) -> dict[str, int]:
        """Every counter of :data:`POOL_COUNTERS`: the closed pools' plus the open ones' now."""
        with self._lock:
            totals = dict(self._closed)
            for pool in self._open:
                stats = pool.get_stats()
                for key in POOL_COUNTERS:
                    totals[key] += stats.get(key, 0)
            return totals

    def sizes(self) -> tuple[int, int] | None:
        """(min_size, max_size) of the pool opened last, None before any was opened."""
        with self._lock:
            if self._open:
                stats = self._open[-1].get_stats()
                self._sizes = (stats.get("pool_min", 0), stats.get("pool_max", 0))
            return self._sizes

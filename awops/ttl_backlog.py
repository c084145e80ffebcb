"""How many rows are past their ttl, read cheaply enough to ask every minute.

``pg-health`` and ``pg-ttl-purge`` both export the backlog, under the same series, so both
read it here the same way: exact through the ttl index up to ``COUNT_CAP`` rows, and past that
the planner's estimate. An exact count of a large backlog walks every expired index entry
(millions, on a table whose purge has fallen behind) just when the server is busiest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

COUNT_CAP = 10_000


@dataclass(frozen=True)
class Backlog:
    rows: int
    exact: bool  # False: at least COUNT_CAP rows, ``rows`` is the planner's estimate
    oldest: int | None  # the smallest expired ttl; None when nothing is expired


def measure(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    column: sql.Composable,
    expired: sql.Composable,
    params: Mapping[str, Any],
) -> Backlog:
    """The backlog of rows of ``table`` matching ``expired`` (a condition on ``params``)."""
    # Job modules import this one when configured; psycopg is loaded when it measures.
    from psycopg import sql

    row = conn.execute(
        sql.SQL("SELECT min({col}) FROM {tbl} WHERE {where}").format(
            col=column, tbl=table, where=expired
        ),
        params,
    ).fetchone()
    oldest = row[0] if row else None
    if oldest is None:
        return Backlog(0, True, None)
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {tbl} WHERE {where} LIMIT {cap}) s").format(
            tbl=table, where=expired, cap=sql.Literal(COUNT_CAP)
        ),
        params,
    ).fetchone()
    count = int(row[0]) if row else 0
    if count < COUNT_CAP:
        return Backlog(count, True, int(oldest))
    # The parameters are bound before planning, so the estimate uses the column's histogram.
    plan = conn.execute(
        sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {tbl} WHERE {where}").format(
            tbl=table, where=expired
        ),
        params,
    ).fetchone()
    estimate = int(plan[0][0]["Plan"]["Plan Rows"]) if plan is not None else 0
    return Backlog(max(count, estimate), False, int(oldest))

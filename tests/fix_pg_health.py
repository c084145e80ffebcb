"""Helpers of the pg-health tests: thresholds by environment, databases, sessions, WAL."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.fix_pg import PgCluster, PgDatabase
from tests.fix_schema import create_actingweb_schema

JOB = "pg-health"


def options(**values: Any) -> dict[str, str]:
    return {f"AWOPS_JOB_PG_HEALTH_{key.upper()}": str(value) for key, value in values.items()}


def actingweb_database(cluster: PgCluster) -> PgDatabase:
    db = cluster.create_database()
    with db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn)
    return db


def scalar(db: PgDatabase | PgCluster, query: str, *params: Any) -> Any:
    # A new session each time: statistics are read as of a transaction's first access.
    with db.connect(autocommit=True) as conn:
        row = conn.execute(query, params or None).fetchone()
    return row[0] if row else None


def switch_wal(db: PgDatabase, times: int) -> None:
    """Finish ``times`` WAL segments, each with a write in it (an empty one is not switched)."""
    with db.connect(autocommit=True) as conn:
        for _ in range(times):
            conn.execute(
                "INSERT INTO actors (id, creator, passphrase) VALUES (%s, 'c', 'p')",
                ("wal-" + secrets.token_hex(6),),
            )
            conn.execute("SELECT pg_switch_wal()")


@contextmanager
def in_background(target: Callable[[], Any]) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(30)


def waiting_on_lock(db: PgDatabase, pid: int) -> bool:
    return scalar(db, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", pid)


def create_monitor_role(db: PgDatabase, *grants: str) -> dict[str, str]:
    """A login role with ``grants`` (``{role}`` names it); its PG_DB_USER and PG_DB_PASSWORD."""
    role, password = "awops_" + secrets.token_hex(4), secrets.token_hex(12)
    with db.connect(autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        for grant in grants:
            conn.execute(grant.format(role=role))
    return {"PG_DB_USER": role, "PG_DB_PASSWORD": password}

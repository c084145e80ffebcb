"""What awops knows of ActingWeb's PostgreSQL schema, shared by the checks, backups and restores.

The tables come from ActingWeb's Alembic migrations; ``alembic_version`` holds the revision.
"""

from __future__ import annotations

PG_TABLES: tuple[str, ...] = (
    "actors",
    "properties",
    "property_lookup",
    "trusts",
    "peertrustees",
    "subscriptions",
    "subscription_diffs",
    "subscription_suspensions",
    "attributes",
)
ALEMBIC_TABLE = "alembic_version"

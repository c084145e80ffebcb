"""ActingWeb's PostgreSQL schema as its Alembic migrations leave it (ActingWeb 3.13+)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from awops.actingweb import PG_TABLES

ACTINGWEB_TABLES = PG_TABLES

_DDL = """
CREATE TABLE actors (
    id VARCHAR(255) PRIMARY KEY,
    creator VARCHAR(255) NOT NULL,
    passphrase TEXT NOT NULL,
    created_at TIMESTAMP
);
CREATE INDEX ix_actors_creator ON actors (creator);
CREATE TABLE properties (
    id VARCHAR(255) NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (id, name)
);
CREATE TABLE property_lookup (
    property_name VARCHAR(255) NOT NULL,
    value TEXT NOT NULL,
    actor_id VARCHAR(255) NOT NULL,
    PRIMARY KEY (property_name, value),
    CONSTRAINT fk_property_lookup_actor FOREIGN KEY (actor_id)
        REFERENCES actors (id) ON DELETE CASCADE
);
CREATE INDEX idx_property_lookup_actor_id ON property_lookup (actor_id);
CREATE TABLE trusts (
    id VARCHAR(255) NOT NULL,
    peerid VARCHAR(255) NOT NULL,
    baseuri TEXT NOT NULL,
    type VARCHAR(255) NOT NULL,
    relationship VARCHAR(255) NOT NULL,
    secret VARCHAR(255) NOT NULL,
    "desc" TEXT,
    approved BOOLEAN NOT NULL,
    peer_approved BOOLEAN NOT NULL,
    verified BOOLEAN NOT NULL,
    verification_token VARCHAR(255),
    peer_identifier VARCHAR(255),
    established_via VARCHAR(255),
    created_at TIMESTAMP,
    last_accessed TIMESTAMP,
    last_connected_via VARCHAR(255),
    client_name VARCHAR(255),
    client_version VARCHAR(255),
    client_platform VARCHAR(255),
    oauth_client_id VARCHAR(255),
    aw_supported TEXT,
    aw_version VARCHAR(50),
    capabilities_fetched_at TIMESTAMP,
    PRIMARY KEY (id, peerid)
);
CREATE INDEX idx_trusts_secret ON trusts (secret);
CREATE TABLE peertrustees (
    id VARCHAR(255) NOT NULL,
    peerid VARCHAR(255) NOT NULL,
    baseuri TEXT NOT NULL,
    type VARCHAR(255) NOT NULL,
    passphrase TEXT NOT NULL,
    PRIMARY KEY (id, peerid)
);
CREATE TABLE subscriptions (
    id VARCHAR(255) NOT NULL,
    peer_sub_id VARCHAR(255) NOT NULL,
    peerid VARCHAR(255) NOT NULL,
    subid VARCHAR(255) NOT NULL,
    granularity VARCHAR(255),
    target VARCHAR(255),
    subtarget VARCHAR(255),
    resource VARCHAR(255),
    seqnr INTEGER NOT NULL DEFAULT 1,
    callback BOOLEAN NOT NULL,
    PRIMARY KEY (id, peer_sub_id)
);
CREATE TABLE subscription_diffs (
    id VARCHAR(255) NOT NULL,
    subid_seqnr VARCHAR(255) NOT NULL,
    subid VARCHAR(255) NOT NULL,
    timestamp TIMESTAMP NOT NULL,
    diff TEXT NOT NULL,
    seqnr INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (id, subid_seqnr)
);
CREATE TABLE subscription_suspensions (
    id VARCHAR(255) NOT NULL,
    target VARCHAR(255) NOT NULL,
    subtarget VARCHAR(255) NOT NULL DEFAULT '',
    suspended_at TIMESTAMP NOT NULL,
    PRIMARY KEY (id, target, subtarget)
);
CREATE TABLE attributes (
    id VARCHAR(255) NOT NULL,
    bucket_name VARCHAR(255) NOT NULL,
    bucket VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    data JSONB,
    timestamp TIMESTAMP,
    ttl_timestamp BIGINT,
    PRIMARY KEY (id, bucket_name)
);
CREATE INDEX idx_attributes_ttl ON attributes (ttl_timestamp) WHERE ttl_timestamp IS NOT NULL;
CREATE INDEX idx_attributes_chain_id ON attributes ((data ->> 'chain_id'))
    WHERE (data ->> 'chain_id') IS NOT NULL;
"""


def create_actingweb_schema(conn: Any, schema: str = "public") -> None:
    """Create ActingWeb's tables in ``schema`` (created if missing) on an autocommit connection."""
    with conn.transaction():
        if schema != "public":
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(_DDL)

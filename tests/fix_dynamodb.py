"""ActingWeb's DynamoDB tables (3.13+) created in moto exactly as ActingWeb creates them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fix_moto import MotoServer

# suffix -> (hash key, range key or None, {gsi name: gsi hash key}), checked against ActingWeb
# 3.13's pynamodb models (actingweb/db/dynamodb/*.py) and actingweb.db.verify_tables: every
# model is PAY_PER_REQUEST, every key attribute a string, every GSI projects ALL; the v2 lookup
# table is keyed on a digest alone, ``lookup_key``. Kept apart from awops/dynamodb.py on purpose,
# so the tests check awops against ActingWeb rather than against itself.
ACTINGWEB_TABLES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "actors": ("id", None, {"creator-index": "creator"}),
    "attributes": ("id", "bucket_name", {}),
    "peertrustees": ("id", "peerid", {}),
    "properties": ("id", "name", {}),
    "subscriptions": ("id", "peer_sub_id", {}),
    "subscriptiondiffs": ("id", "subid_seqnr", {}),
    "subscription_suspensions": ("id", "target_key", {}),
    "trusts": ("id", "peerid", {"secret-index": "secret"}),
    "property_lookup_v2": ("lookup_key", None, {}),
}
# USE_PROPERTY_LOOKUP_TABLE=false: no lookup table, a GSI on properties.value instead.
LEGACY_TABLES = {
    **{k: v for k, v in ACTINGWEB_TABLES.items() if k != "property_lookup_v2"},
    "properties": ("id", "name", {"property-index": "value"}),
}


def table_definitions(legacy: bool = False) -> dict[str, tuple[str, str | None, dict[str, str]]]:
    return LEGACY_TABLES if legacy else ACTINGWEB_TABLES


def create_table(
    client: Any,
    name: str,
    hash_key: str,
    range_key: str | None = None,
    indexes: dict[str, str] | None = None,
    billing_mode: str = "PAY_PER_REQUEST",
    read_units: int = 5,
    write_units: int = 5,
) -> None:
    """One table as pynamodb creates it; PROVISIONED gives the table and its GSIs the units."""
    indexes = indexes or {}
    attributes = {hash_key, *indexes.values()} | ({range_key} if range_key else set())
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "AttributeDefinitions": [
            {"AttributeName": attr, "AttributeType": "S"} for attr in sorted(attributes)
        ],
        "BillingMode": billing_mode,
    }
    provisioned = billing_mode == "PROVISIONED"
    throughput = {"ReadCapacityUnits": read_units, "WriteCapacityUnits": write_units}
    if provisioned:
        request["ProvisionedThroughput"] = throughput
    if indexes:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index,
                "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                **({"ProvisionedThroughput": throughput} if provisioned else {}),
            }
            for index, key in indexes.items()
        ]
    client.create_table(**request)


def create_actingweb_tables(
    client: Any,
    prefix: str = "demo_actingweb",
    legacy: bool = False,
    billing_mode: str = "PAY_PER_REQUEST",
    skip: tuple[str, ...] = (),
) -> list[str]:
    """Create every table (with GSIs, projection ALL) but the ``skip`` suffixes; returns names."""
    names = []
    for suffix, (hash_key, range_key, indexes) in table_definitions(legacy).items():
        if suffix in skip:
            continue
        name = f"{prefix}_{suffix}"
        create_table(client, name, hash_key, range_key, indexes, billing_mode)
        names.append(name)
    for name in names:
        client.get_waiter("table_exists").wait(TableName=name)
    return names


def protect_tables(client: Any, names: list[str], ttl_table: str = "") -> None:
    """TTL on ``ttl_table`` and PITR on every table, as a careful operator sets them."""
    if ttl_table:
        client.update_time_to_live(
            TableName=ttl_table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl_timestamp"},
        )
    for name in names:
        client.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def dynamodb_client(moto: MotoServer) -> Any:
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=moto.url,
        region_name="us-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def aw_dynamodb(moto: MotoServer) -> Iterator[Any]:
    """A fresh moto holding ActingWeb's tables with TTL and PITR as a careful operator sets them."""
    client = dynamodb_client(moto)
    names = create_actingweb_tables(client)
    protect_tables(client, names, ttl_table="demo_actingweb_attributes")
    yield client

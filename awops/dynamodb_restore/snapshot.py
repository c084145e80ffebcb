"""A table's settings, as far as a restore has to reproduce them, read from AWS.

``None`` in a field means *unknown*: the source table is gone (a restore from a backup of a
deleted table) and the backup does not record that setting. Unknown is never taken for "off".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from awops.dynamodb import billing_mode, translated_errors
from awops.dynamodb_restore._aws import describe_table_or_none
from awops.dynamodb_restore.autoscaling import ScalingSetup, read_scaling

AWS_TAG_PREFIX = "aws:"  # reserved: set by AWS, never by a TagResource call
# AWS reports a status in transition right after the switch; both mean "on".
TTL_ON = ("ENABLED", "ENABLING")
PITR_ON = ("ENABLED", "ENABLING")


@dataclass
class Stream:
    enabled: bool
    view_type: str = ""

    def summary(self) -> str:
        return f"enabled {self.view_type}" if self.enabled else "disabled"


@dataclass
class Ttl:
    enabled: bool  # ENABLED or ENABLING
    attribute: str = ""

    def summary(self) -> str:
        return f"enabled on {self.attribute}" if self.enabled else "disabled"


@dataclass
class Pitr:
    enabled: bool
    recovery_period_days: int | None = None  # None: AWS did not say (the 35-day default)

    def summary(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.recovery_period_days is None:
            return "enabled"
        return f"enabled, {self.recovery_period_days} days"


@dataclass
class Index:
    keys: tuple[str | None, str | None]
    projection: str  # "ALL", "KEYS_ONLY" or "INCLUDE a,b"
    throughput: tuple[int, int] | None  # (read, write) units when provisioned

    def summary(self) -> str:
        hash_key, range_key = self.keys
        text = f"{hash_key}" + (f"+{range_key}" if range_key else "") + f", {self.projection}"
        if self.throughput:
            text += f", {self.throughput[0]}/{self.throughput[1]} units"
        return text


@dataclass
class TableSettings:
    """What a restore must carry over from one table; ``None``: unknown (see module doc)."""

    name: str
    arn: str
    status: str
    key_schema: tuple[str | None, str | None]
    billing_mode: str
    throughput: tuple[int, int] | None  # table's (read, write) units when PROVISIONED
    gsis: dict[str, Index] = field(default_factory=dict)
    lsis: dict[str, Index] = field(default_factory=dict)
    stream: Stream | None = None
    deletion_protection: bool | None = None
    ttl: Ttl | None = None
    pitr: Pitr | None = None
    tags: dict[str, str] | None = None
    autoscaling: ScalingSetup | None = None
    unknown_reason: str = ""  # why some of the above are None
    description: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def provisioned(self) -> bool:
        return self.billing_mode == "PROVISIONED" or any(i.throughput for i in self.gsis.values())


def _keys(key_schema: list[dict[str, str]]) -> tuple[str | None, str | None]:
    hash_key = next((k["AttributeName"] for k in key_schema if k["KeyType"] == "HASH"), None)
    range_key = next((k["AttributeName"] for k in key_schema if k["KeyType"] == "RANGE"), None)
    return hash_key, range_key


def _throughput(description: dict[str, Any], provisioned: bool) -> tuple[int, int] | None:
    if not provisioned:
        return None
    units = description.get("ProvisionedThroughput") or {}
    return int(units.get("ReadCapacityUnits", 0)), int(units.get("WriteCapacityUnits", 0))


def _projection(index: dict[str, Any]) -> str:
    projection = index.get("Projection") or {}
    kind = str(projection.get("ProjectionType", "ALL"))
    extra = projection.get("NonKeyAttributes") or []
    return f"{kind} {','.join(sorted(extra))}" if extra else kind


def _indexes(indexes: list[dict[str, Any]], provisioned: bool) -> dict[str, Index]:
    return {
        index["IndexName"]: Index(
            _keys(index.get("KeySchema", [])),
            _projection(index),
            _throughput(index, provisioned),
        )
        for index in indexes
    }


def settings_from_description(description: dict[str, Any]) -> TableSettings:
    """The settings ``DescribeTable`` alone tells (no TTL, PITR, tags or auto scaling)."""
    mode = billing_mode(description)
    provisioned = mode == "PROVISIONED"
    stream = description.get("StreamSpecification") or {}
    return TableSettings(
        name=description["TableName"],
        arn=description.get("TableArn", ""),
        status=description.get("TableStatus", "UNKNOWN"),
        key_schema=_keys(description.get("KeySchema", [])),
        billing_mode=mode,
        throughput=_throughput(description, provisioned),
        gsis=_indexes(description.get("GlobalSecondaryIndexes") or [], provisioned),
        lsis=_indexes(description.get("LocalSecondaryIndexes") or [], False),
        stream=Stream(bool(stream.get("StreamEnabled")), stream.get("StreamViewType", "")),
        deletion_protection=bool(description.get("DeletionProtectionEnabled", False)),
        description=description,
    )


def read_settings(client: Any, name: str, autoscaling: Callable[[], Any]) -> TableSettings | None:
    """Everything about table ``name`` a restore carries over; None when it does not exist.

    ``autoscaling`` returns the Application Auto Scaling client; it is called only for a table
    with provisioned capacity. Failures raise :class:`~awops.errors.JobError`.
    """
    description = describe_table_or_none(client, name)
    if description is None:
        return None
    settings = settings_from_description(description)
    with translated_errors(client, f"DescribeTimeToLive {name}"):
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    settings.ttl = Ttl(ttl.get("TimeToLiveStatus") in TTL_ON, ttl.get("AttributeName", ""))
    with translated_errors(client, f"DescribeContinuousBackups {name}"):
        backups = client.describe_continuous_backups(TableName=name)
    pitr = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription") or {}
    period = pitr.get("RecoveryPeriodInDays")
    settings.pitr = Pitr(
        pitr.get("PointInTimeRecoveryStatus") in PITR_ON,
        int(period) if period is not None else None,
    )
    settings.tags = read_tags(client, settings.arn)
    settings.autoscaling = ScalingSetup()
    if settings.provisioned:
        aas = autoscaling()
        with translated_errors(aas, f"Application Auto Scaling DescribeScalableTargets {name}"):
            settings.autoscaling = read_scaling(aas, name, sorted(settings.gsis))
    return settings


def read_tags(client: Any, arn: str) -> dict[str, str]:
    """The table's own tags (not AWS' reserved ``aws:`` ones)."""
    tags: dict[str, str] = {}
    request: dict[str, Any] = {"ResourceArn": arn}
    with translated_errors(client, f"ListTagsOfResource {arn}"):
        while True:
            page = client.list_tags_of_resource(**request)
            for tag in page.get("Tags", []):
                if not tag["Key"].startswith(AWS_TAG_PREFIX):
                    tags[tag["Key"]] = tag["Value"]
            if not page.get("NextToken"):
                return tags
            request["NextToken"] = page["NextToken"]


def settings_from_backup(
    backup: dict[str, Any], table: str, ttl_attribute: str = ""
) -> TableSettings:
    """The settings of a deleted table, as far as its backup's ``DescribeBackup`` records them.

    The key schema, billing mode and capacity come from ``SourceTableDetails``; GSIs, stream
    and TTL from ``SourceTableFeatureDetails``, where AWS gives it. PITR is turned on (ActingWeb
    expects it on every table) and TTL, when the backup does not say, is ``ttl_attribute`` as
    ActingWeb expects it. Tags, deletion protection and auto scaling stay unknown, and so does
    the stream when the backup carries no feature details.
    """
    details = backup.get("SourceTableDetails") or {}
    features = backup.get("SourceTableFeatureDetails") or {}
    mode = str(details.get("BillingMode") or billing_mode(details))
    provisioned = mode == "PROVISIONED"
    stream = features.get("StreamDescription") or {}
    ttl = features.get("TimeToLiveDescription")
    settings = TableSettings(
        name=table,
        arn=details.get("TableArn", ""),
        status="DELETED",
        key_schema=_keys(details.get("KeySchema", [])),
        billing_mode=mode,
        throughput=_throughput(details, provisioned),
        gsis=_indexes(
            features.get("GlobalSecondaryIndexes") or details.get("GlobalSecondaryIndexes") or [],
            provisioned,
        ),
        lsis=_indexes(
            features.get("LocalSecondaryIndexes") or details.get("LocalSecondaryIndexes") or [],
            False,
        ),
        pitr=Pitr(True),
        unknown_reason=f"the source table {table} no longer exists and its backup does not "
        "record it; set it by hand if the table had it",
    )
    if features:  # AWS' answer describes the features, an absent one was off
        settings.stream = Stream(
            bool(stream.get("StreamEnabled")), stream.get("StreamViewType", "")
        )
    if ttl is not None or features:
        ttl = ttl or {}
        settings.ttl = Ttl(ttl.get("TimeToLiveStatus") in TTL_ON, ttl.get("AttributeName", ""))
    else:
        settings.ttl = Ttl(bool(ttl_attribute), ttl_attribute)
    return settings

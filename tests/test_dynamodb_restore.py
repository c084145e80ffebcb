"""``awops restore dynamodb`` end to end: the real CLI against moto's server, through a proxy
that gives PITR windows and restore progress as AWS does (tests/fix_dynamodb_restore.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from tests.fix_awops import clean_environ, run_awops, wait_for
from tests.fix_dynamodb import ACTINGWEB_TABLES
from tests.fix_dynamodb_restore import RestoreProxy
from tests.fix_faultproxy import FaultProxy
from tests.fix_moto import MotoServer
from tests.fix_pg import free_port

PREFIX = "demo_actingweb"
TO = "restored"


@pytest.fixture
def restore_proxy(moto: MotoServer) -> Iterator[RestoreProxy]:
    """A :class:`RestoreProxy` in front of this test's (reset) moto."""
    proxy = RestoreProxy(moto.url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def restore_env(moto: MotoServer, proxy: Any, **extra: str) -> dict[str, str]:
    return {
        **moto.aws_env(),
        "DATABASE_BACKEND": "dynamodb",
        "AWS_DB_HOST": proxy.url,
        "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": proxy.url,
        **extra,
    }


def restore(moto: MotoServer, proxy: Any, *args: str, **env: str) -> Any:
    return run_awops(
        "restore", "dynamodb", "--poll-seconds", "0.05", *args, env=restore_env(moto, proxy, **env)
    )


def restore_json(moto: MotoServer, proxy: FaultProxy, *args: str) -> tuple[int, dict[str, Any]]:
    done = restore(moto, proxy, "--to-prefix", TO, "--json", *args)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def tables_of(client: Any, prefix: str) -> list[str]:
    return sorted(n for n in client.list_tables()["TableNames"] if n.startswith(f"{prefix}_"))


def pitr_of(client: Any, table: str) -> dict[str, Any]:
    answer = client.describe_continuous_backups(TableName=table)
    return answer["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]


def epoch_of(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_restores_all_nine_tables_to_one_instant_with_ttl_and_pitr(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    aw_dynamodb.put_item(
        TableName=f"{PREFIX}_attributes",
        Item={"id": {"S": "a1"}, "bucket_name": {"S": "oauth"}, "ttl_timestamp": {"N": "99"}},
    )
    aw_dynamodb.put_item(
        TableName=f"{PREFIX}_actors", Item={"id": {"S": "a1"}, "creator": {"S": "x@y"}}
    )
    code, document = restore_json(moto, restore_proxy)
    assert code == 0, document
    assert document["ok"] is True
    assert [t["source"] for t in document["tables"]] == [f"{PREFIX}_{s}" for s in ACTINGWEB_TABLES]
    assert tables_of(aw_dynamodb, TO) == sorted(f"{TO}_{s}" for s in ACTINGWEB_TABLES)

    # One instant: every restore was asked for the same RestoreDateTime, the one reported,
    # and every restore was started before the first setting was re-applied.
    restores = restore_proxy.operations("RestoreTableToPointInTime")
    assert len(restores) == 9
    assert {r["RestoreDateTime"] for r in restores} == {
        epoch_of(document["time"].replace("Z", "+00:00"))
    }
    operations = restore_proxy.operation_names()
    last_start = max(i for i, op in enumerate(operations) if op == "RestoreTableToPointInTime")
    assert last_start < operations.index("UpdateContinuousBackups")

    for table in document["tables"]:
        assert table["status"] == "ACTIVE"
        assert set(table["settings"].values()) == {"ok"}, table
        assert all(row["match"] for row in table["comparison"]), table
        assert pitr_of(aw_dynamodb, table["restored"])["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = aw_dynamodb.describe_time_to_live(TableName=f"{TO}_attributes")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl_timestamp"}
    gsis = aw_dynamodb.describe_table(TableName=f"{TO}_trusts")["Table"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsis] == ["secret-index"]
    item = aw_dynamodb.get_item(
        TableName=f"{TO}_actors", Key={"id": {"S": "a1"}}, ConsistentRead=True
    )
    assert item["Item"]["creator"] == {"S": "x@y"}

    # The sources were only read.
    writes = [
        body.get("TableName") or body.get("ResourceArn", "")
        for operation, body in restore_proxy.calls
        if operation.startswith(("Update", "Tag", "Untag", "Delete", "Put", "Create"))
    ]
    assert writes and not [name for name in writes if PREFIX in name]


def test_tags_deletion_protection_stream_and_recovery_period_carried_over(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    actors = aw_dynamodb.describe_table(TableName=f"{PREFIX}_actors")["Table"]["TableArn"]
    aw_dynamodb.tag_resource(
        ResourceArn=actors, Tags=[{"Key": "team", "Value": "core"}, {"Key": "env", "Value": "p"}]
    )
    aw_dynamodb.update_table(TableName=f"{PREFIX}_actors", DeletionProtectionEnabled=True)
    aw_dynamodb.update_table(
        TableName=f"{PREFIX}_trusts",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    aw_dynamodb.update_continuous_backups(
        TableName=f"{PREFIX}_attributes",
        PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True,
            "RecoveryPeriodInDays": 10,
        },
    )
    code, document = restore_json(
        moto, restore_proxy, "--table", "actors", "--table", "trusts", "--table", "attributes"
    )
    assert code == 0, document
    # --table restores that subset and nothing else.
    assert tables_of(aw_dynamodb, TO) == [f"{TO}_actors", f"{TO}_attributes", f"{TO}_trusts"]

    restored = aw_dynamodb.describe_table(TableName=f"{TO}_actors")["Table"]
    assert restored["DeletionProtectionEnabled"] is True
    tags = aw_dynamodb.list_tags_of_resource(ResourceArn=restored["TableArn"])["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "p"), ("team", "core")]
    stream = aw_dynamodb.describe_table(TableName=f"{TO}_trusts")["Table"]["StreamSpecification"]
    assert stream == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert pitr_of(aw_dynamodb, f"{TO}_attributes")["RecoveryPeriodInDays"] == 10
    rows = {
        (t["restored"], row["setting"]): row for t in document["tables"] for row in t["comparison"]
    }
    assert rows[(f"{TO}_actors", "tags")]["restored"] == "env=p, team=core"
    assert rows[(f"{TO}_actors", "deletion protection")]["restored"] == "on"
    assert rows[(f"{TO}_attributes", "pitr")]["restored"] == "enabled, 10 days"
    assert rows[(f"{TO}_trusts", "stream")]["restored"] == "enabled NEW_AND_OLD_IMAGES"
    assert rows[(f"{TO}_trusts", "gsi secret-index")]["match"] is True

    human = restore(moto, restore_proxy, "--to-prefix", "again", "--table", "actors")
    assert human.returncode == 0, human.stderr
    assert "all re-applied and matching" in human.stdout
    assert "deletion protection  on" in human.stdout
    assert "AWS_DB_PREFIX=again" in human.stdout


def test_refuses_when_a_target_exists_and_creates_nothing(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    aw_dynamodb.create_table(
        TableName=f"{TO}_trusts",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    code, document = restore_json(moto, restore_proxy)
    assert code == 1
    assert document["refused"] is True and document["ok"] is False
    assert document["problems"] == [
        f"target table {TO}_trusts exists; a restore never overwrites a table"
    ]
    assert tables_of(aw_dynamodb, TO) == [f"{TO}_trusts"]
    assert not restore_proxy.operations("RestoreTableToPointInTime", "RestoreTableFromBackup")

    human = restore(moto, restore_proxy, "--to-prefix", TO)
    assert human.returncode == 1
    assert "restore refused; nothing was created" in human.stderr
    assert f"{TO}_trusts exists" in human.stderr


def test_a_setting_that_cannot_be_applied_is_reported_and_exits_1(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    actors = aw_dynamodb.describe_table(TableName=f"{PREFIX}_actors")["Table"]["TableArn"]
    aw_dynamodb.tag_resource(ResourceArn=actors, Tags=[{"Key": "team", "Value": "core"}])
    restore_proxy.fail_next(1, "AccessDeniedException", operations=("TagResource",))
    code, document = restore_json(moto, restore_proxy, "--table", "actors", "--table", "trusts")
    assert code == 1
    assert document["ok"] is False
    actors_outcome = document["tables"][0]
    assert actors_outcome["status"] == "ACTIVE"
    assert (
        actors_outcome["settings"]["tags"] == "failed: AccessDeniedException: AccessDeniedException"
    )
    assert actors_outcome["settings"]["ttl"] == actors_outcome["settings"]["pitr"] == "ok"
    assert f"{TO}_actors: tags failed: AccessDeniedException" in document["problems"][0]
    assert f"{TO}_actors: tags differs (source team=core, restored none)" in document["problems"]
    trusts_outcome = document["tables"][1]
    assert trusts_outcome["problems"] == [] and trusts_outcome["status"] == "ACTIVE"
    assert document["existing_tables"] == [f"{TO}_actors", f"{TO}_trusts"]


def test_restore_from_on_demand_backup_arns(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    actors, attributes = f"{PREFIX}_actors", f"{PREFIX}_attributes"
    aw_dynamodb.put_item(TableName=actors, Item={"id": {"S": "before"}, "creator": {"S": "c"}})
    arns = [
        aw_dynamodb.create_backup(TableName=t, BackupName=f"by-hand-{t}")["BackupDetails"][
            "BackupArn"
        ]
        for t in (actors, attributes)
    ]
    aw_dynamodb.put_item(TableName=actors, Item={"id": {"S": "after"}, "creator": {"S": "c"}})
    code, document = restore_json(moto, restore_proxy, "--backup", arns[0], "--backup", arns[1])
    assert code == 0, document
    assert document["mode"] == "backup" and document["time"] is None
    assert [t["backup"] for t in document["tables"]] == arns
    assert tables_of(aw_dynamodb, TO) == [f"{TO}_actors", f"{TO}_attributes"]
    ids = sorted(i["id"]["S"] for i in aw_dynamodb.scan(TableName=f"{TO}_actors")["Items"])
    assert ids == ["before"]
    assert [
        body["BackupArn"] for body in restore_proxy.operations("RestoreTableFromBackup")
    ] == arns
    ttl = aw_dynamodb.describe_time_to_live(TableName=f"{TO}_attributes")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert pitr_of(aw_dynamodb, f"{TO}_actors")["PointInTimeRecoveryStatus"] == "ENABLED"


def test_restore_from_the_backup_of_a_deleted_table_says_what_is_unknown(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    attributes = f"{PREFIX}_attributes"
    arn = aw_dynamodb.create_backup(TableName=attributes, BackupName="last")["BackupDetails"][
        "BackupArn"
    ]
    aw_dynamodb.delete_table(TableName=attributes)
    code, document = restore_json(moto, restore_proxy, "--backup", arn)
    assert code == 1
    outcome = document["tables"][0]
    assert outcome["status"] == "ACTIVE"
    assert outcome["settings"]["ttl"] == outcome["settings"]["pitr"] == "ok"
    assert outcome["settings"]["tags"].startswith(
        f"unknown: the source table {attributes} no longer exists"
    )
    ttl = aw_dynamodb.describe_time_to_live(TableName=f"{TO}_attributes")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl_timestamp"}
    assert pitr_of(aw_dynamodb, f"{TO}_attributes")["PointInTimeRecoveryStatus"] == "ENABLED"


def test_a_time_outside_the_windows_is_refused_and_creates_nothing(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    code, document = restore_json(moto, restore_proxy, "--time", "2001-01-01T00:00:00Z")
    assert code == 1 and document["refused"] is True
    assert len(document["problems"]) == 9
    assert "can be restored from" in document["problems"][0]
    assert "not to 2001-01-01T00:00:00Z" in document["problems"][0]
    assert tables_of(aw_dynamodb, TO) == []


def test_a_time_inside_every_window_is_the_instant(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    for suffix in ("actors", "trusts"):
        restore_proxy.windows[f"{PREFIX}_{suffix}"] = (1_000_000_000.0, 2_000_000_000.0)
    code, document = restore_json(
        moto, restore_proxy, "--table", "actors", "--table", "trusts", "--time",
        "2020-06-01T12:00:00+02:00",
    )  # fmt: skip
    assert code == 0, document
    assert document["time"] == "2020-06-01T10:00:00Z"
    assert {
        r["RestoreDateTime"] for r in restore_proxy.operations("RestoreTableToPointInTime")
    } == {epoch_of("2020-06-01T10:00:00+00:00")}


def test_usage_errors_exit_2_before_asking_aws(aw_dynamodb: Any, moto: MotoServer):
    closed = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    cases = {
        ("--to-prefix", PREFIX): "is the source prefix",
        ("--to-prefix", "bad prefix!"): "--to-prefix 'bad prefix!': expected letters",
        ("--to-prefix", TO, "--time", "2026-01-01T00:00:00Z", "--backup", "arn:x"): "exclude",
        ("--to-prefix", TO, "--table", "nope"): "--table nope: not an expected table",
        ("--to-prefix", TO, "--time", "2026-01-01T00:00:00"): "give the zone",
        ("--to-prefix", TO, "--time", "yesterday"): "expected an ISO 8601 time",
        ("--to-prefix", TO, "--time", "2999-01-01T00:00:00Z"): "is in the future",
        ("--to-prefix", TO, "--backup", "arn:nope"): "expected a DynamoDB backup ARN",
    }
    for args, message in cases.items():
        done = restore(moto, closed, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert tables_of(aw_dynamodb, TO) == []


def test_dry_run_checks_and_creates_nothing(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    done = restore(moto, restore_proxy, "--to-prefix", TO, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would restore 9 table(s) to" in done.stdout
    assert f"{PREFIX}_trusts" in done.stdout and f"{TO}_trusts" in done.stdout
    assert tables_of(aw_dynamodb, TO) == []
    assert not restore_proxy.operations("RestoreTableToPointInTime")


def test_capacity_and_auto_scaling_carried_over(moto: MotoServer, restore_proxy: RestoreProxy):
    import boto3

    from tests.fix_dynamodb import create_table, dynamodb_client

    client = dynamodb_client(moto)
    trusts = f"{PREFIX}_trusts"
    create_table(client, trusts, "id", "peerid", {"secret-index": "secret"}, "PROVISIONED", 7, 3)
    client.update_continuous_backups(
        TableName=trusts, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    scaling = boto3.client(
        "application-autoscaling",
        endpoint_url=moto.url,
        region_name="us-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for resource in (f"table/{trusts}", f"table/{trusts}/index/secret-index"):
        kind = "index" if "index" in resource else "table"
        scaling.register_scalable_target(
            ServiceNamespace="dynamodb",
            ResourceId=resource,
            ScalableDimension=f"dynamodb:{kind}:ReadCapacityUnits",
            MinCapacity=7,
            MaxCapacity=70,
        )
    scaling.put_scaling_policy(
        PolicyName="reads",
        ServiceNamespace="dynamodb",
        ResourceId=f"table/{trusts}",
        ScalableDimension="dynamodb:table:ReadCapacityUnits",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "DynamoDBReadCapacityUtilization"
            },
        },
    )
    code, document = restore_json(moto, restore_proxy, "--table", "trusts")
    assert code == 0, document
    targets = scaling.describe_scalable_targets(
        ServiceNamespace="dynamodb",
        ResourceIds=[f"table/{TO}_trusts", f"table/{TO}_trusts/index/secret-index"],
    )["ScalableTargets"]
    assert sorted((t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets) == [
        (f"table/{TO}_trusts", 7, 70),
        (f"table/{TO}_trusts/index/secret-index", 7, 70),
    ]
    policies = scaling.describe_scaling_policies(
        ServiceNamespace="dynamodb", ResourceId=f"table/{TO}_trusts"
    )["ScalingPolicies"]
    assert [(p["PolicyName"], p["PolicyType"]) for p in policies] == [
        ("reads", "TargetTrackingScaling")
    ]
    restored = client.describe_table(TableName=f"{TO}_trusts")["Table"]
    assert restored["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    rows = {row["setting"]: row for row in document["tables"][0]["comparison"]}
    assert rows["capacity"] == {
        "setting": "capacity", "source": "7/3 units", "restored": "7/3 units", "match": True
    }  # fmt: skip
    assert rows["autoscaling"]["match"] is True
    assert "reads (TargetTrackingScaling, table Read)" in rows["autoscaling"]["restored"]


def test_timeout_reports_the_tables_still_restoring_and_leaves_them(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    restore_proxy.creating.add(f"{TO}_actors")
    code, document = restore_json(
        moto, restore_proxy, "--table", "actors", "--table", "trusts", "--timeout-seconds", "1"
    )
    assert code == 1
    assert document["stopped_by"] == "timeout"
    actors, trusts = document["tables"]
    assert actors["status"] == "TIMED_OUT" and actors["exists"] is True
    assert "the table is left in place" in actors["problems"][0]
    assert trusts["status"] == "ACTIVE" and trusts["problems"] == []
    assert document["existing_tables"] == [f"{TO}_actors", f"{TO}_trusts"]
    assert tables_of(aw_dynamodb, PREFIX) == sorted(f"{PREFIX}_{s}" for s in ACTINGWEB_TABLES)


def test_sigterm_stops_waiting_and_reports_what_exists(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    restore_proxy.creating.add(f"{TO}_attributes")
    process = subprocess.Popen(
        [sys.executable, "-m", "awops", "restore", "dynamodb", "--to-prefix", TO,
         "--table", "attributes", "--poll-seconds", "0.05"],
        env=clean_environ(restore_env(moto, restore_proxy)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: (
                restore_proxy.operations("DescribeTable").count({"TableName": f"{TO}_attributes"})
                >= 3
            ),
            what="the restore being awaited",
        )
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, stderr
    assert f"{TO}_attributes" in stdout and "INTERRUPTED" in stdout
    assert f"tables that exist now: {TO}_attributes" in stdout
    assert "the source tables were not touched" in stdout
    assert f"restoring {PREFIX}_attributes into {TO}_attributes: CREATING" in stderr
    assert not restore_proxy.operations("UpdateTimeToLive")


def test_iso_times_parse_with_any_zone() -> None:
    assert datetime(2026, 12, 5, 9, 14, tzinfo=UTC).timestamp() == epoch_of(
        "2026-12-05T09:14:00+00:00"
    )


def test_a_restore_aws_refuses_fails_that_table_and_the_others_go_on(
    aw_dynamodb: Any, moto: MotoServer, restore_proxy: RestoreProxy
):
    restore_proxy.fail_next(
        1, "PointInTimeRecoveryUnavailableException", operations=("RestoreTableToPointInTime",)
    )
    code, document = restore_json(moto, restore_proxy, "--table", "actors", "--table", "trusts")
    assert code == 1
    actors, trusts = document["tables"]
    assert actors["status"] == "FAILED" and actors["exists"] is False
    assert actors["problems"] == [
        f"{TO}_actors: restore not started: DynamoDB RestoreTableToPointInTime {TO}_actors "
        "failed: PointInTimeRecoveryUnavailableException: PointInTimeRecoveryUnavailableException"
    ]
    assert trusts["status"] == "ACTIVE" and trusts["problems"] == []
    assert document["existing_tables"] == [f"{TO}_trusts"]
    assert tables_of(aw_dynamodb, TO) == [f"{TO}_trusts"]

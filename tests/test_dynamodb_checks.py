"""dynamodb-gsi, dynamodb-ttl and dynamodb-pitr against moto's server, every fault made for real."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.fix_awops import run_awops
from tests.fix_dynamodb import (
    create_actingweb_tables,
    create_table,
    dynamodb_client,
    protect_tables,
)
from tests.fix_faultproxy import THROUGHPUT_EXCEEDED, FaultProxy
from tests.fix_moto import MotoServer
from tests.fix_pg import free_port

PREFIX = "demo_actingweb"
ATTRIBUTES = f"{PREFIX}_attributes"
TRUSTS = f"{PREFIX}_trusts"
ACTORS = f"{PREFIX}_actors"
CHECKS = ("dynamodb-gsi", "dynamodb-ttl", "dynamodb-pitr")


def env(moto: MotoServer, **extra: str) -> dict[str, str]:
    return {**moto.aws_env(), "DATABASE_BACKEND": "dynamodb", **extra}


def test_healthy_deployment_is_ok_everywhere(aw_dynamodb: Any, moto: MotoServer, in_process):
    awops = in_process(env(moto))
    results = {name: awops.run(name) for name in CHECKS}
    assert {name: r.status for name, r in results.items()} == dict.fromkeys(CHECKS, "ok")
    assert results["dynamodb-gsi"].summary == (
        f"9 tables under {PREFIX}_ ACTIVE, 2 GSIs ACTIVE as expected"
    )
    assert ATTRIBUTES in results["dynamodb-ttl"].summary
    assert results["dynamodb-pitr"].summary == "PITR ENABLED and current on all 9 tables"
    assert awops.value("awops_dynamodb_table_active", table=f"{PREFIX}_property_lookup_v2") == 1
    assert awops.value("awops_dynamodb_table_items", table=ACTORS) == 0
    assert awops.value("awops_dynamodb_gsi_active", table=TRUSTS, index="secret-index") == 1
    assert awops.value("awops_dynamodb_gsi_backfilling", table=ACTORS, index="creator-index") == 0
    assert awops.value("awops_dynamodb_ttl_enabled", table=ATTRIBUTES) == 1
    assert awops.value("awops_dynamodb_ttl_expired_items", table=ATTRIBUTES) == 0
    assert awops.value("awops_dynamodb_pitr_enabled", table=TRUSTS) == 1
    age = awops.value("awops_dynamodb_pitr_latest_restorable_age_seconds", table=TRUSTS)
    assert age is not None and 0 <= age < 900
    for name in CHECKS:
        assert awops.value("awops_job_healthy", job=name) == 1


def test_three_checks_stay_within_three_control_plane_calls_per_table(
    aw_dynamodb: Any, moto: MotoServer, in_process
):
    awops = in_process(env(moto))
    calls: list[str] = []
    client = awops.resources.aws.dynamodb()
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    for name in CHECKS:
        assert awops.run(name).status == "ok"
    control_plane = [op for op in calls if op != "Scan"]
    assert len(control_plane) <= 3 * 9, control_plane
    assert control_plane.count("DescribeTable") == 9
    assert control_plane.count("DescribeContinuousBackups") == 9
    assert control_plane.count("DescribeTimeToLive") == 1
    assert "Scan" in calls  # the backlog estimate is data plane, budgeted by read units

    # A second round inside describe_cache_seconds asks nothing it already knows.
    calls.clear()
    assert awops.run("dynamodb-gsi").status == "ok"
    assert calls == []


def test_deleted_gsi_missing_table_and_leftover_table_are_named(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    create_actingweb_tables(client, skip=("subscription_suspensions",))
    client.update_table(
        TableName=TRUSTS, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "secret-index"}}]
    )
    # the deprecated v1 lookup table an upgrade leaves behind
    create_table(client, f"{PREFIX}_property_lookup", "property_name", "value")
    create_table(client, "otherapp_actors", "id")  # another prefix: none of our business
    create_table(client, f"{PREFIX}_awops_locks", "lock_key")  # awops' own job locks
    awops = in_process(env(moto))
    result = awops.run("dynamodb-gsi")
    assert result.status == "problem"
    assert f"{PREFIX}_subscription_suspensions is missing" in result.summary
    assert f"{TRUSTS} GSI secret-index is missing" in result.summary
    assert f"unexpected table under {PREFIX}_: {PREFIX}_property_lookup" in result.summary
    assert "otherapp" not in result.summary
    assert result.details["unexpected_tables"] == [f"{PREFIX}_property_lookup"]
    assert (
        awops.value("awops_dynamodb_table_active", table=f"{PREFIX}_subscription_suspensions") == 0
    )
    assert awops.value("awops_dynamodb_table_active", table=TRUSTS) == 1
    assert awops.value("awops_dynamodb_gsi_active", table=TRUSTS, index="secret-index") == 0
    assert awops.value("awops_dynamodb_gsi_active", table=ACTORS, index="creator-index") == 1
    assert awops.value("awops_job_healthy", job="dynamodb-gsi") == 0

    # the same table is missing for PITR too, by name
    pitr = awops.run("dynamodb-pitr")
    assert pitr.status == "problem"
    assert f"{PREFIX}_subscription_suspensions is missing" in pitr.summary
    assert (
        awops.value("awops_dynamodb_pitr_enabled", table=f"{PREFIX}_subscription_suspensions") == 0
    )


def test_provisioned_table_with_one_write_unit_is_a_problem(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    create_actingweb_tables(client, skip=("actors",))
    # ActingWeb before 3.13: pynamodb's provisioned defaults, GSI at 2 read / 1 write units
    create_table(client, ACTORS, "id", None, {"creator-index": "creator"}, "PROVISIONED", 2, 1)
    awops = in_process(env(moto))
    result = awops.run("dynamodb-gsi")
    assert result.status == "problem"
    assert f"{ACTORS} is PROVISIONED with 2 read / 1 write units" in result.summary
    assert (
        f"{ACTORS} GSI creator-index is PROVISIONED with 2 read / 1 write units" in result.summary
    )
    assert result.details["tables"][ACTORS]["billing_mode"] == "PROVISIONED"
    assert awops.value("awops_dynamodb_table_provisioned", table=ACTORS) == 1
    assert awops.value("awops_dynamodb_table_provisioned", table=TRUSTS) == 0
    assert awops.value("awops_dynamodb_table_active", table=ACTORS) == 1

    generous = in_process(
        env(
            moto,
            AWOPS_JOB_DYNAMODB_GSI_MIN_READ_CAPACITY_UNITS="1",
            AWOPS_JOB_DYNAMODB_GSI_MIN_WRITE_CAPACITY_UNITS="1",
        )
    )
    assert generous.run("dynamodb-gsi").status == "ok"


def test_legacy_mode_expects_the_property_index_and_no_lookup_table(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    create_actingweb_tables(client, legacy=True)
    legacy = in_process(env(moto, USE_PROPERTY_LOOKUP_TABLE="false"))
    result = legacy.run("dynamodb-gsi")
    assert result.status == "ok", result.summary
    assert result.summary.startswith("8 tables")
    assert (
        legacy.value(
            "awops_dynamodb_gsi_active", table=f"{PREFIX}_properties", index="property-index"
        )
        == 1
    )

    lookup_mode = in_process(env(moto))
    result = lookup_mode.run("dynamodb-gsi")
    assert result.status == "problem"
    assert f"{PREFIX}_property_lookup_v2 is missing" in result.summary
    assert f"{PREFIX}_properties has unexpected GSI property-index" in result.summary


def test_expected_tables_are_configurable(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    create_actingweb_tables(client)
    awops = in_process(
        env(
            moto,
            AWOPS_DYNAMODB_EXPECTED_TABLES="actors,trusts,custom",
            AWOPS_JOB_DYNAMODB_GSI_IGNORE_TABLES="attributes,peertrustees,properties,"
            "subscriptions,subscriptiondiffs,subscription_suspensions,property_lookup_v2",
        )
    )
    result = awops.run("dynamodb-gsi")
    assert result.status == "problem"
    assert result.summary == f"{PREFIX}_custom is missing"
    create_table(client, f"{PREFIX}_custom", "whatever")
    again = in_process(
        env(
            moto,
            AWOPS_DYNAMODB_EXPECTED_TABLES="actors,trusts,custom",
            AWOPS_JOB_DYNAMODB_GSI_REPORT_UNEXPECTED_TABLES="false",
        )
    )
    assert again.run("dynamodb-gsi").status == "ok"


def test_ttl_disabled(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    names = create_actingweb_tables(client)
    protect_tables(client, names)  # PITR only
    awops = in_process(env(moto))
    result = awops.run("dynamodb-ttl")
    assert result.status == "problem"
    assert result.summary == f"TTL is DISABLED on {ATTRIBUTES}"
    assert awops.value("awops_dynamodb_ttl_enabled", table=ATTRIBUTES) == 0


def test_ttl_on_the_wrong_attribute(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    create_actingweb_tables(client)
    client.update_time_to_live(
        TableName=ATTRIBUTES,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    awops = in_process(env(moto))
    result = awops.run("dynamodb-ttl")
    assert result.status == "problem"
    assert (
        f"TTL on {ATTRIBUTES} uses attribute expires_at, expected ttl_timestamp" in result.summary
    )
    assert awops.value("awops_dynamodb_ttl_enabled", table=ATTRIBUTES) == 0


def _put_attribute(client: Any, key: str, ttl: int | None) -> None:
    item = {"id": {"S": "actor1"}, "bucket_name": {"S": f"oauth:{key}"}, "data": {"S": "{}"}}
    if ttl is not None:
        item["ttl_timestamp"] = {"N": str(ttl)}
    client.put_item(TableName=ATTRIBUTES, Item=item)


def test_expired_items_present_are_counted_and_aged(aw_dynamodb: Any, moto: MotoServer, in_process):
    now = int(time.time())
    three_days_ago = now - 3 * 86400
    for i in range(3):
        _put_attribute(aw_dynamodb, f"old{i}", three_days_ago - i)
    for i in range(2):
        _put_attribute(aw_dynamodb, f"recent{i}", now - 2 * 3600)
    _put_attribute(aw_dynamodb, "within-grace", now - 600)
    _put_attribute(aw_dynamodb, "future", now + 3600)
    _put_attribute(aw_dynamodb, "no-ttl", None)
    small_pages = {
        "AWOPS_JOB_DYNAMODB_TTL_SCAN_SEGMENTS": "2",
        "AWOPS_JOB_DYNAMODB_TTL_SCAN_PAGE_SIZE": "2",
        "AWOPS_JOB_DYNAMODB_TTL_SCAN_READ_UNITS_PER_SECOND": "0",
    }
    awops = in_process(env(moto, **small_pages))
    result = awops.run("dynamodb-ttl")
    assert result.status == "problem"
    assert f"5 expired items still in {ATTRIBUTES}, oldest expired 3.0 days ago" in result.summary
    backlog = result.details["tables"][ATTRIBUTES]["backlog"]
    assert backlog["complete"] is True
    assert backlog["scanned_items"] == 8
    assert awops.value("awops_dynamodb_ttl_expired_items", table=ATTRIBUTES) == 5
    oldest = awops.value("awops_dynamodb_ttl_oldest_expired_age_seconds", table=ATTRIBUTES)
    assert oldest is not None and abs(oldest - (now - (three_days_ago - 2))) < 120

    # AWS catches up with the old ones: two recent expired items are no problem
    for i in range(3):
        aw_dynamodb.delete_item(
            TableName=ATTRIBUTES, Key={"id": {"S": "actor1"}, "bucket_name": {"S": f"oauth:old{i}"}}
        )
    result = in_process(env(moto, **small_pages)).run("dynamodb-ttl")
    assert result.status == "ok"
    assert "2 expired items" in result.summary
    assert result.details["tables"][ATTRIBUTES]["backlog"]["expired_items"] == 2


def test_backlog_scan_stops_at_its_read_unit_budget(aw_dynamodb: Any, moto: MotoServer, in_process):
    now = int(time.time())
    for i in range(6):
        _put_attribute(aw_dynamodb, f"old{i}", now - 5 * 86400)
    awops = in_process(
        env(
            moto,
            AWOPS_JOB_DYNAMODB_TTL_SCAN_SEGMENTS="1",
            AWOPS_JOB_DYNAMODB_TTL_SCAN_PAGE_SIZE="1",
            AWOPS_JOB_DYNAMODB_TTL_SCAN_READ_UNITS="2",
            AWOPS_JOB_DYNAMODB_TTL_SCAN_READ_UNITS_PER_SECOND="0",
        )
    )
    result = awops.run("dynamodb-ttl")
    backlog = result.details["tables"][ATTRIBUTES]["backlog"]
    assert backlog["complete"] is False
    assert backlog["stopped_by"] == "read-unit budget"
    assert backlog["scanned_items"] < 6
    # still enough to see the problem, and the count is extrapolated from ItemCount
    assert result.status == "problem"
    assert f"about 6 expired items still in {ATTRIBUTES}" in result.summary
    assert awops.value("awops_dynamodb_ttl_expired_items", table=ATTRIBUTES) == 6


def test_pitr_disabled_on_one_table_and_opt_in_remediation(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    names = create_actingweb_tables(client)
    protect_tables(client, [n for n in names if n != TRUSTS], ttl_table=ATTRIBUTES)
    awops = in_process(env(moto))
    result = awops.run("dynamodb-pitr")
    assert result.status == "problem"
    assert result.summary == f"PITR is DISABLED on {TRUSTS}"
    assert awops.value("awops_dynamodb_pitr_enabled", table=TRUSTS) == 0
    assert awops.value("awops_dynamodb_pitr_enabled", table=ACTORS) == 1

    remediate = env(moto, AWOPS_JOB_DYNAMODB_PITR_ENABLE_PITR="true")
    dry = in_process(remediate).run("dynamodb-pitr", dry_run=True)
    assert dry.status == "problem"
    assert f"PITR is DISABLED on {TRUSTS} (dry run: would enable it)" in dry.summary
    status = client.describe_continuous_backups(TableName=TRUSTS)["ContinuousBackupsDescription"]
    assert status["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"

    fixer = in_process(remediate)
    result = fixer.run("dynamodb-pitr")
    assert result.status == "ok"
    assert result.summary.startswith(f"enabled PITR on {TRUSTS}")
    assert result.details["enabled_now"] == [TRUSTS]
    assert fixer.value("awops_dynamodb_pitr_enabled", table=TRUSTS) == 1
    status = client.describe_continuous_backups(TableName=TRUSTS)["ContinuousBackupsDescription"]
    assert status["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert in_process(env(moto)).run("dynamodb-pitr").status == "ok"


def test_pitr_stale_latest_restorable_time(aw_dynamodb: Any, moto: MotoServer, in_process):
    # moto keeps LatestRestorableDateTime at the moment PITR was enabled, so it only ages
    awops = in_process(env(moto, AWOPS_JOB_DYNAMODB_PITR_MAX_LATEST_RESTORABLE_AGE_SECONDS="0"))
    result = awops.run("dynamodb-pitr")
    assert result.status == "problem"
    assert f"{ACTORS} LatestRestorableDateTime is" in result.summary
    age = awops.value("awops_dynamodb_pitr_latest_restorable_age_seconds", table=ACTORS)
    assert age is not None and age > 0
    assert awops.value("awops_dynamodb_pitr_restore_window_seconds", table=ACTORS) == 0


def test_endpoint_down_is_an_error_never_healthy(moto: MotoServer, in_process):
    nobody = f"http://127.0.0.1:{free_port()}"
    awops = in_process(env(moto, AWS_DB_HOST=nobody, AWOPS_DYNAMODB_MAX_ATTEMPTS="1"))
    for name in CHECKS:
        result = awops.run(name)
        assert result.status == "error", name
        assert f"DynamoDB endpoint {nobody} unreachable" in result.summary
        assert awops.value("awops_job_healthy", job=name) == 0
    assert awops.value("awops_dynamodb_table_active", table=ACTORS) is None

    cli = run_awops(
        "run-once",
        "dynamodb-gsi",
        "--json",
        env=env(moto, AWS_DB_HOST=nobody, AWOPS_DYNAMODB_MAX_ATTEMPTS="1"),
    )
    assert cli.returncode == 1, cli.stderr
    (job,) = json.loads(cli.stdout)["jobs"]
    assert job["status"] == "error"
    assert nobody in job["summary"]


def test_endpoint_dropping_connections_is_an_error(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy, in_process
):
    fault_proxy.down = True
    awops = in_process(env(moto, AWS_DB_HOST=fault_proxy.url, AWOPS_DYNAMODB_MAX_ATTEMPTS="2"))
    result = awops.run("dynamodb-pitr")
    assert result.status == "error"
    assert f"DynamoDB endpoint {fault_proxy.url} unreachable" in result.summary
    assert awops.value("awops_job_healthy", job="dynamodb-pitr") == 0


def test_throttling_is_retried(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy, in_process
):
    fault_proxy.fail_next(2)
    awops = in_process(env(moto, AWS_DB_HOST=fault_proxy.url, AWOPS_DYNAMODB_MAX_ATTEMPTS="3"))
    result = awops.run("dynamodb-gsi")
    assert result.status == "ok", result.summary
    assert fault_proxy.faults_sent == 2
    assert fault_proxy.requests[:3] == ["DescribeTable"] * 3  # the same call, retried
    assert awops.value("awops_dynamodb_table_active", table=ACTORS) == 1


def test_throttling_that_outlasts_the_retries_is_an_error(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy, in_process
):
    fault_proxy.fail_next(100)
    awops = in_process(env(moto, AWS_DB_HOST=fault_proxy.url, AWOPS_DYNAMODB_MAX_ATTEMPTS="2"))
    result = awops.run("dynamodb-gsi")
    assert result.status == "error"
    assert result.summary.startswith(
        f"DynamoDB throttled DescribeTable {ACTORS} (ThrottlingException) after 2 attempt(s)"
    )
    assert fault_proxy.faults_sent == 2
    assert awops.value("awops_job_healthy", job="dynamodb-gsi") == 0
    assert awops.value("awops_dynamodb_table_active", table=ACTORS) is None


@pytest.mark.parametrize("code", [THROUGHPUT_EXCEEDED])
def test_throttled_backlog_scan_is_an_error(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy, in_process, code: str
):
    fault_proxy.fail_next(100, code, operations=("Scan",))
    awops = in_process(env(moto, AWS_DB_HOST=fault_proxy.url, AWOPS_DYNAMODB_MAX_ATTEMPTS="2"))
    result = awops.run("dynamodb-ttl")
    assert result.status == "error"
    assert f"DynamoDB throttled Scan {ATTRIBUTES} ({code})" in result.summary
    assert awops.value("awops_dynamodb_ttl_enabled", table=ATTRIBUTES) == 1

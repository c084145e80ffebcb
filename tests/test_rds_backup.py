"""rds-backup against moto's RDS server on loopback: instances, Aurora clusters, every shortfall.

Where moto cannot reach a state AWS reaches (an old ``LatestRestorableTime``, a snapshot still
being taken), the test says how it gets there: see tests/fix_rds.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from awops.runner import JobRunner
from tests.fix_awops import run_awops
from tests.fix_moto import MotoServer
from tests.fix_pg import free_port
from tests.fix_rds import (
    CLUSTER,
    INSTANCE,
    RdsRewritingProxy,
    create_cluster,
    create_instance,
    delete_automated_snapshots,
    drop_element,
    rds_client,
    set_element,
)

JOB = "rds-backup"
INSTANCE_RESOURCE = f"instance/{INSTANCE}"
CLUSTER_RESOURCE = f"cluster/{CLUSTER}"
DAY_SECONDS = 86400


def env(endpoint: str, moto: MotoServer, **extra: str) -> dict[str, str]:
    return {
        **moto.aws_env(),
        "DATABASE_BACKEND": "postgresql",
        "AWOPS_JOB_RDS_BACKUP_ENDPOINT_URL": endpoint,
        **extra,
    }


def instance_env(moto: MotoServer, endpoint: str = "", **extra: str) -> dict[str, str]:
    return env(endpoint or moto.url, moto, AWOPS_JOB_RDS_BACKUP_INSTANCE=INSTANCE, **extra)


def cluster_env(moto: MotoServer, **extra: str) -> dict[str, str]:
    return env(moto.url, moto, AWOPS_JOB_RDS_BACKUP_CLUSTER=CLUSTER, **extra)


@pytest.fixture
def rds_proxy(moto: MotoServer) -> Iterator[RdsRewritingProxy]:
    """A rewriting proxy in front of this test's (reset) moto."""
    proxy = RdsRewritingProxy(moto.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_healthy_instance_is_ok_and_its_metrics_say_why(moto: MotoServer, in_process) -> None:
    create_instance(rds_client(moto))
    awops = in_process(instance_env(moto))
    started = time.time()
    result = awops.run(JOB)
    assert result.status == "ok", result.summary
    assert result.summary.startswith(f"{INSTANCE_RESOURCE}: automated backups kept 7 days")
    assert "deletion protection on, storage encrypted" in result.summary
    entry = result.details["resources"][INSTANCE_RESOURCE]
    assert entry["status"] == "available" and entry["engine"] == "postgres"
    assert entry["automated_snapshots"] == 1
    assert result.details["problems"] == [] and result.details["errors"] == []

    labels = {"resource": INSTANCE_RESOURCE}
    assert awops.value("awops_rds_available", **labels) == 1
    assert awops.value("awops_rds_backup_retention_period_seconds", **labels) == 7 * DAY_SECONDS
    assert awops.value("awops_rds_deletion_protection", **labels) == 1
    assert awops.value("awops_rds_storage_encrypted", **labels) == 1
    assert awops.value("awops_rds_automated_snapshots", **labels) == 1
    lag = awops.value("awops_rds_latest_restorable_age_seconds", **labels)
    assert lag is not None and 0 <= lag < 900
    snapshot_age = awops.value("awops_rds_snapshot_age_seconds", **labels)
    assert snapshot_age is not None and 0 <= snapshot_age < 3600
    # The newest automated snapshot feeds the backup-age series that AwopsBackupTooOld watches.
    taken = awops.value(
        "awops_backup_last_success_timestamp_seconds", backend="rds", target=INSTANCE_RESOURCE
    )
    assert taken is not None and started - 3600 < taken <= time.time()
    assert awops.value("awops_job_healthy", job=JOB) == 1


def test_short_retention_is_a_problem(moto: MotoServer, in_process) -> None:
    create_instance(rds_client(moto), retention_days=1)
    awops = in_process(instance_env(moto))
    result = awops.run(JOB)
    assert result.status == "problem"
    assert result.summary == (
        f"{INSTANCE_RESOURCE} keeps automated backups 1 day(s), under min_retention_days 7"
    )
    value = awops.value("awops_rds_backup_retention_period_seconds", resource=INSTANCE_RESOURCE)
    assert value == DAY_SECONDS
    assert awops.value("awops_job_healthy", job=JOB) == 0
    # The operator's own minimum decides.
    relaxed = in_process(instance_env(moto, AWOPS_JOB_RDS_BACKUP_MIN_RETENTION_DAYS="1"))
    assert relaxed.run(JOB).status == "ok"


def test_deletion_protection_off_is_a_problem(moto: MotoServer, in_process) -> None:
    client = rds_client(moto)
    create_instance(client)
    client.modify_db_instance(
        DBInstanceIdentifier=INSTANCE, DeletionProtection=False, ApplyImmediately=True
    )
    awops = in_process(instance_env(moto))
    result = awops.run(JOB)
    assert result.status == "problem"
    assert result.summary == f"{INSTANCE_RESOURCE} has DeletionProtection off"
    assert awops.value("awops_rds_deletion_protection", resource=INSTANCE_RESOURCE) == 0


def test_unencrypted_storage_is_a_problem_unless_not_required(moto: MotoServer, in_process) -> None:
    create_instance(rds_client(moto), encrypted=False)
    awops = in_process(instance_env(moto))
    result = awops.run(JOB)
    assert result.status == "problem"
    assert (
        result.summary == f"{INSTANCE_RESOURCE} storage is not encrypted (StorageEncrypted false)"
    )
    assert awops.value("awops_rds_storage_encrypted", resource=INSTANCE_RESOURCE) == 0

    accepted = in_process(
        instance_env(moto, AWOPS_JOB_RDS_BACKUP_REQUIRE_STORAGE_ENCRYPTED="false")
    )
    result = accepted.run(JOB)
    assert result.status == "ok", result.summary
    assert "storage not encrypted" in result.summary
    # The figure stays true on /metrics; only the job's verdict follows the setting.
    assert accepted.value("awops_rds_storage_encrypted", resource=INSTANCE_RESOURCE) == 0


def test_aurora_cluster_healthy(moto: MotoServer, in_process) -> None:
    create_cluster(rds_client(moto))
    awops = in_process(cluster_env(moto))
    result = awops.run(JOB)
    assert result.status == "ok", result.summary
    assert result.summary.startswith(f"{CLUSTER_RESOURCE}: automated backups kept 7 days")
    assert result.details["resources"][CLUSTER_RESOURCE]["engine"] == "aurora-postgresql"
    labels = {"resource": CLUSTER_RESOURCE}
    assert awops.value("awops_rds_available", **labels) == 1
    assert awops.value("awops_rds_backup_retention_period_seconds", **labels) == 7 * DAY_SECONDS
    assert awops.value("awops_rds_automated_snapshots", **labels) == 1
    assert awops.value("awops_rds_deletion_protection", **labels) == 1
    assert awops.value("awops_rds_storage_encrypted", **labels) == 1
    assert awops.value("awops_rds_latest_restorable_age_seconds", **labels) is not None
    assert awops.value("awops_rds_snapshot_age_seconds", **labels) is not None


def test_aurora_cluster_shortfalls_are_each_named(moto: MotoServer, in_process) -> None:
    client = rds_client(moto)
    create_cluster(client)
    create_instance(client)
    client.modify_db_cluster(
        DBClusterIdentifier=CLUSTER,
        BackupRetentionPeriod=3,
        DeletionProtection=False,
        ApplyImmediately=True,
    )
    # Both keys at once: the healthy instance is reported beside the cluster's shortfalls.
    awops = in_process(cluster_env(moto, AWOPS_JOB_RDS_BACKUP_INSTANCE=INSTANCE))
    result = awops.run(JOB)
    assert result.status == "problem"
    assert result.details["problems"] == [
        f"{CLUSTER_RESOURCE} keeps automated backups 3 day(s), under min_retention_days 7",
        f"{CLUSTER_RESOURCE} has DeletionProtection off",
    ]
    assert set(result.details["resources"]) == {INSTANCE_RESOURCE, CLUSTER_RESOURCE}
    assert awops.value("awops_rds_deletion_protection", resource=CLUSTER_RESOURCE) == 0
    assert awops.value("awops_rds_deletion_protection", resource=INSTANCE_RESOURCE) == 1


def test_member_of_an_aurora_cluster_is_an_error_naming_the_cluster(
    moto: MotoServer, in_process
) -> None:
    client = rds_client(moto)
    create_cluster(client)
    client.create_db_instance(
        DBInstanceIdentifier="aurora-writer",
        DBInstanceClass="db.r6g.large",
        Engine="aurora-postgresql",
        DBClusterIdentifier=CLUSTER,
    )
    awops = in_process(env(moto.url, moto, AWOPS_JOB_RDS_BACKUP_INSTANCE="aurora-writer"))
    result = awops.run(JOB)
    assert result.status == "error"
    assert f"member of cluster '{CLUSTER}'" in result.summary
    assert f'cluster = "{CLUSTER}"' in result.summary


def test_unknown_identifiers_are_errors_naming_them(moto: MotoServer, in_process) -> None:
    create_instance(rds_client(moto))
    awops = in_process(
        env(
            moto.url,
            moto,
            AWOPS_JOB_RDS_BACKUP_INSTANCE="no-such-db",
            AWOPS_JOB_RDS_BACKUP_CLUSTER="no-such-cluster",
        )
    )
    result = awops.run(JOB)
    assert result.status == "error"
    assert "RDS instance 'no-such-db' not found" in result.summary
    assert "RDS cluster 'no-such-cluster' not found" in result.summary
    assert "region us-west-1" in result.summary
    assert awops.value("awops_rds_available", resource="instance/no-such-db") == 0
    assert awops.value("awops_rds_available", resource="cluster/no-such-cluster") == 0
    assert awops.value("awops_job_healthy", job=JOB) == 0


def test_unreachable_endpoint_is_an_error(moto: MotoServer, in_process) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    awops = in_process(instance_env(moto, endpoint=closed, AWOPS_DYNAMODB_MAX_ATTEMPTS="2"))
    result = awops.run(JOB)
    assert result.status == "error"
    assert f"RDS endpoint {closed} (region us-west-1) unreachable" in result.summary
    assert f"RDS instance '{INSTANCE}'" in result.summary
    assert awops.value("awops_rds_available", resource=INSTANCE_RESOURCE) == 0
    assert awops.value("awops_job_healthy", job=JOB) == 0


def test_pitr_lag_and_stale_snapshot_are_problems(moto: MotoServer, in_process) -> None:
    # moto's LatestRestorableTime is always now and it snapshots only at creation, so the
    # check's clock moves 27 h ahead instead: both figures are then 27 h old.
    create_instance(rds_client(moto))
    awops = in_process(instance_env(moto))
    later = JobRunner(
        awops.config,
        awops.registry,
        awops.metrics,
        awops.resources,
        clock=lambda: time.time() + 27 * 3600,
    )
    result = later.run(JOB)
    assert result.status == "problem"
    lag, stale = result.details["problems"]
    assert lag.startswith(f"{INSTANCE_RESOURCE} LatestRestorableTime is 97")
    assert lag.endswith("s old (max_latest_restorable_age_seconds 900)")
    assert stale.startswith(f"{INSTANCE_RESOURCE} newest automated snapshot is 27.0 h old")
    assert stale.endswith("(max_snapshot_age_seconds 93600)")
    labels = {"resource": INSTANCE_RESOURCE}
    lag_seconds = awops.value("awops_rds_latest_restorable_age_seconds", **labels)
    assert lag_seconds is not None and lag_seconds >= 27 * 3600
    snapshot_age = awops.value("awops_rds_snapshot_age_seconds", **labels)
    assert snapshot_age is not None and snapshot_age >= 27 * 3600


def test_no_automated_snapshot_is_a_problem_and_its_age_series_goes(
    moto: MotoServer, in_process
) -> None:
    client = rds_client(moto)
    create_instance(client)
    awops = in_process(instance_env(moto))
    assert awops.run(JOB).status == "ok"
    assert awops.value("awops_rds_snapshot_age_seconds", resource=INSTANCE_RESOURCE) is not None

    delete_automated_snapshots(client)
    result = awops.run(JOB)
    assert result.status == "problem"
    assert result.summary == f"{INSTANCE_RESOURCE} has no available automated snapshot"
    assert awops.value("awops_rds_automated_snapshots", resource=INSTANCE_RESOURCE) == 0
    # No stale age stays behind once the snapshot is gone.
    assert awops.value("awops_rds_snapshot_age_seconds", resource=INSTANCE_RESOURCE) is None


def test_first_backup_still_running_counts_nothing(
    moto: MotoServer, rds_proxy: RdsRewritingProxy, in_process
) -> None:
    # AWS' answer for a new instance: backing-up, no LatestRestorableTime yet, and its first
    # automated snapshot still "creating" -- moto answers none of these, the proxy edits them in.
    create_instance(rds_client(moto))
    rds_proxy.rewrite(
        "DescribeDBInstances",
        drop_element("LatestRestorableTime"),
        set_element("DBInstanceStatus", "backing-up"),
    )
    rds_proxy.rewrite("DescribeDBSnapshots", set_element("Status", "creating"))
    awops = in_process(instance_env(moto, endpoint=rds_proxy.url))
    result = awops.run(JOB)
    assert result.status == "problem"
    assert result.details["problems"] == [
        f"{INSTANCE_RESOURCE} has no LatestRestorableTime: no point-in-time restore",
        f"{INSTANCE_RESOURCE} has no available automated snapshot",
    ]
    labels = {"resource": INSTANCE_RESOURCE}
    assert awops.value("awops_rds_available", **labels) == 1  # backing-up serves
    assert awops.value("awops_rds_automated_snapshots", **labels) == 0
    assert awops.value("awops_rds_latest_restorable_age_seconds", **labels) is None
    assert (
        awops.value(
            "awops_backup_last_success_timestamp_seconds", backend="rds", target=INSTANCE_RESOURCE
        )
        is None
    )
    assert {"DescribeDBInstances", "DescribeDBSnapshots"} <= set(rds_proxy.actions)


def test_disabled_backups_are_one_problem_and_a_stopped_instance_says_so(
    moto: MotoServer, rds_proxy: RdsRewritingProxy, in_process
) -> None:
    # With BackupRetentionPeriod 0 AWS deletes the automated snapshots and drops
    # LatestRestorableTime; moto keeps both, so they are removed here.
    client = rds_client(moto)
    create_instance(client, retention_days=0)
    delete_automated_snapshots(client)
    rds_proxy.rewrite("DescribeDBInstances", drop_element("LatestRestorableTime"))
    awops = in_process(instance_env(moto, endpoint=rds_proxy.url))
    result = awops.run(JOB)
    assert result.status == "problem"
    assert result.details["problems"] == [
        f"{INSTANCE_RESOURCE} has automated backups disabled (BackupRetentionPeriod 0): "
        "no point-in-time restore, no automated snapshots"
    ]
    assert awops.value("awops_rds_backup_retention_period_seconds", resource=INSTANCE_RESOURCE) == 0

    # A stopped instance takes no backups: the lagging figure names the status.
    client.stop_db_instance(DBInstanceIdentifier=INSTANCE)
    client.modify_db_instance(
        DBInstanceIdentifier=INSTANCE, BackupRetentionPeriod=7, ApplyImmediately=True
    )
    result = awops.run(JOB)
    assert result.status == "problem"
    assert (
        f"{INSTANCE_RESOURCE} has no available automated snapshot (status stopped)"
        in (result.details["problems"])
    )
    assert awops.value("awops_rds_available", resource=INSTANCE_RESOURCE) == 0


def test_missing_iam_permission_is_an_error_naming_the_action(
    moto: MotoServer, rds_proxy: RdsRewritingProxy, in_process
) -> None:
    create_instance(rds_client(moto))
    rds_proxy.refuse(
        "DescribeDBSnapshots",
        "AccessDenied",
        "User: arn:aws:sts::123456789012:assumed-role/awops/i-0abc is not authorized to perform: "
        "rds:DescribeDBSnapshots on resource: arn:aws:rds:us-west-1:123456789012:db:actingweb-db "
        "because no identity-based policy allows the rds:DescribeDBSnapshots action",
    )
    awops = in_process(instance_env(moto, endpoint=rds_proxy.url))
    result = awops.run(JOB)
    assert result.status == "error"
    assert result.summary.startswith(
        f"DescribeDBSnapshots of RDS instance '{INSTANCE}' at {rds_proxy.url} (region us-west-1) "
        "failed: AccessDenied: "
    )
    assert "rds:DescribeDBSnapshots" in result.summary
    assert awops.value("awops_rds_available", resource=INSTANCE_RESOURCE) == 0


def test_off_until_instance_or_cluster_is_set(moto: MotoServer, in_process) -> None:
    awops = in_process(env(moto.url, moto))
    result = awops.run(JOB)
    assert result.status == "skipped"
    assert result.summary == (
        "nothing to check: no instance or cluster set ([jobs.rds-backup] instance or cluster)"
    )
    assert awops.value("awops_job_healthy", job=JOB) is None  # a skip is neither good nor bad

    listing = run_awops("jobs", env={"DATABASE_BACKEND": "postgresql"})
    assert listing.returncode == 0, listing.stderr
    (row,) = [line for line in listing.stdout.splitlines() if line.startswith(JOB)]
    assert row.split()[:4] == [JOB, "yes", "postgresql", "every"]
    assert row.endswith("- (no instance or cluster set)")
    configured = run_awops(
        "jobs", env={"DATABASE_BACKEND": "postgresql", "AWOPS_JOB_RDS_BACKUP_CLUSTER": CLUSTER}
    )
    (row,) = [line for line in configured.stdout.splitlines() if line.startswith(JOB)]
    assert "no instance or cluster set" not in row and row.endswith("Z")
    # A DynamoDB deployment has no PostgreSQL to look after.
    dynamodb_only = in_process({**instance_env(moto), "DATABASE_BACKEND": "dynamodb"})
    assert dynamodb_only.run(JOB).status == "skipped"


def test_run_once_exit_codes_with_boto3s_own_endpoint_variable(moto: MotoServer) -> None:
    client = rds_client(moto)
    create_instance(client)
    # No endpoint_url option: boto3 reads AWS_ENDPOINT_URL_RDS itself.
    base = {**moto.aws_env(), "DATABASE_BACKEND": "postgresql", "AWS_ENDPOINT_URL_RDS": moto.url}
    ok = run_awops(
        "run-once", JOB, "--json", env={**base, "AWOPS_JOB_RDS_BACKUP_INSTANCE": INSTANCE}
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (job,) = json.loads(ok.stdout)["jobs"]
    assert job["status"] == "ok"
    assert job["details"]["resources"][INSTANCE_RESOURCE]["backup_retention_days"] == 7

    create_instance(client, "unprotected", deletion_protection=False)
    bad = run_awops(
        "run-once", JOB, "--json", env={**base, "AWOPS_JOB_RDS_BACKUP_INSTANCE": "unprotected"}
    )
    assert bad.returncode == 1
    (job,) = json.loads(bad.stdout)["jobs"]
    assert job["status"] == "problem"
    assert job["summary"] == "instance/unprotected has DeletionProtection off"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("instance", "actingweb_db", "an RDS identifier"),
        ("cluster", "9lives", "an RDS identifier"),
        ("instance", "double--hyphen", "an RDS identifier"),
        ("region", "Mars", "an AWS region"),
        ("endpoint_url", "ftp://127.0.0.1", "an http:// or https:// URL"),
        ("min_retention_days", "36", "a whole number of at most 35"),
    ],
)
def test_bad_options_exit_2_naming_variable_or_key(
    key: str, value: str, expected: str, tmp_path: Path
) -> None:
    variable = f"AWOPS_JOB_RDS_BACKUP_{key.upper()}"
    result = run_awops("run-once", JOB, env={"DATABASE_BACKEND": "postgresql", variable: value})
    assert result.returncode == 2
    assert f"environment {variable}: expected {expected}" in result.stderr
    config = tmp_path / "awops.toml"
    toml_value = value if value.isdigit() else json.dumps(value)
    config.write_text(f"[jobs.rds-backup]\n{key} = {toml_value}\n")
    result = run_awops("config", "--check", "--config", str(config), env={})
    assert result.returncode == 2
    assert f"{config}: jobs.rds-backup.{key}: expected {expected}" in result.stderr


def test_region_option_reaches_the_client(moto: MotoServer, in_process) -> None:
    # moto keeps each region apart: the instance exists in us-west-1 only.
    create_instance(rds_client(moto))
    awops = in_process(instance_env(moto, AWOPS_JOB_RDS_BACKUP_REGION="eu-central-1"))
    result = awops.run(JOB)
    assert result.status == "error"
    assert "(region eu-central-1)" in result.summary
    assert "not found" in result.summary

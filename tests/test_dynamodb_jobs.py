"""dynamodb-backup and dynamodb-restore-verify against moto's server."""

from __future__ import annotations

import time
from typing import Any

from tests.fix_dynamodb import create_table, dynamodb_client
from tests.fix_faultproxy import THROUGHPUT_EXCEEDED, FaultProxy
from tests.fix_moto import MotoServer

PREFIX = "demo_actingweb"
ACTORS = f"{PREFIX}_actors"
TRUSTS = f"{PREFIX}_trusts"


def env(moto: MotoServer, **extra: str) -> dict[str, str]:
    return {**moto.aws_env(), "DATABASE_BACKEND": "dynamodb", **extra}


def backup_env(moto: MotoServer, **extra: str) -> dict[str, str]:
    defaults = {
        "AWOPS_JOB_DYNAMODB_BACKUP_ENABLED": "true",
        "AWOPS_JOB_DYNAMODB_BACKUP_TABLES": "actors,trusts",
    }
    return env(moto, **{**defaults, **extra})


def verify_env(moto: MotoServer, **extra: str) -> dict[str, str]:
    defaults = {
        "AWOPS_JOB_DYNAMODB_RESTORE_VERIFY_ENABLED": "true",
        "AWOPS_JOB_DYNAMODB_RESTORE_VERIFY_TABLES": "actors",
        "AWOPS_JOB_DYNAMODB_RESTORE_VERIFY_POLL_SECONDS": "0.05",
    }
    return env(moto, **{**defaults, **extra})


def backup_names(client: Any, table: str) -> list[str]:
    summaries = client.list_backups(TableName=table)["BackupSummaries"]
    return sorted(b["BackupName"] for b in summaries if b["BackupStatus"] != "DELETED")


def put_actors(client: Any, count: int) -> None:
    for i in range(count):
        client.put_item(TableName=ACTORS, Item={"id": {"S": f"a{i}"}, "creator": {"S": "x@y"}})


def test_backup_and_restore_verify_are_off_by_default(moto: MotoServer, in_process):
    awops = in_process(env(moto))
    for name in ("dynamodb-backup", "dynamodb-restore-verify"):
        assert awops.config.jobs[name].enabled is False
        result = awops.run(name)
        assert result.status == "skipped"
        assert f"jobs.{name}.enabled = true" in result.summary
    assert awops.config.jobs["dynamodb-gsi"].schedule.text == "every 15m"
    assert awops.config.jobs["dynamodb-ttl"].schedule.text == "every 1h"
    assert awops.config.jobs["dynamodb-pitr"].schedule.text == "every 15m"


def test_backup_creates_named_backups_and_keeps_retention_to_its_own(
    aw_dynamodb: Any, moto: MotoServer, in_process
):
    # two older awops backups, one by hand, one by another tool with a similar name
    for name in (
        f"awops-{ACTORS}-20200101T000000Z",
        f"awops-{ACTORS}-20200102T000000Z",
        "before-the-migration",
        f"awops-{ACTORS}-manual",
    ):
        aw_dynamodb.create_backup(TableName=ACTORS, BackupName=name)
    dry = in_process(backup_env(moto, AWOPS_JOB_DYNAMODB_BACKUP_RETENTION_COUNT="2"))
    result = dry.run("dynamodb-backup", dry_run=True)
    assert result.status == "ok"
    assert result.summary.startswith("would create 2 backups")
    assert result.details["deleted"][ACTORS] == [f"awops-{ACTORS}-20200101T000000Z"]
    assert len(backup_names(aw_dynamodb, ACTORS)) == 4
    assert backup_names(aw_dynamodb, TRUSTS) == []

    awops = in_process(backup_env(moto, AWOPS_JOB_DYNAMODB_BACKUP_RETENTION_COUNT="2"))
    before = time.time()
    result = awops.run("dynamodb-backup")
    assert result.status == "ok", result.summary
    assert result.summary.endswith("deleted 1 old")
    new = result.details["created"][ACTORS]["backup"]
    assert new.startswith(f"awops-{ACTORS}-") and len(new) == len(f"awops-{ACTORS}-") + 16
    assert backup_names(aw_dynamodb, ACTORS) == sorted(
        [f"awops-{ACTORS}-20200102T000000Z", new, "before-the-migration", f"awops-{ACTORS}-manual"]
    )
    assert backup_names(aw_dynamodb, TRUSTS) == [result.details["created"][TRUSTS]["backup"]]
    stamp = awops.value(
        "awops_backup_last_success_timestamp_seconds", backend="dynamodb", target=ACTORS
    )
    assert stamp is not None and stamp >= before - 1
    assert awops.value("awops_backup_size_bytes", backend="dynamodb", target=TRUSTS) is not None
    assert awops.value("awops_dynamodb_backups", table=ACTORS) == 2

    # Forty days later every older awops backup is past retention_days = 35; only the new stays.
    later = in_process(backup_env(moto))
    later.runner.clock = lambda: time.time() + 40 * 86400
    result = later.run("dynamodb-backup")
    assert result.status == "ok"
    assert sorted(result.details["deleted"][ACTORS]) == sorted(
        [f"awops-{ACTORS}-20200102T000000Z", new]
    )
    assert backup_names(aw_dynamodb, ACTORS) == sorted(
        [
            result.details["created"][ACTORS]["backup"],
            "before-the-migration",
            f"awops-{ACTORS}-manual",
        ]
    )


def test_backup_of_a_missing_table_is_an_error_naming_it(
    aw_dynamodb: Any, moto: MotoServer, in_process
):
    awops = in_process(backup_env(moto, AWOPS_JOB_DYNAMODB_BACKUP_TABLES="actors,gone"))
    result = awops.run("dynamodb-backup")
    assert result.status == "error"
    assert f"{PREFIX}_gone is missing" in result.summary
    assert len(backup_names(aw_dynamodb, ACTORS)) == 1
    assert (
        awops.value(
            "awops_backup_last_success_timestamp_seconds",
            backend="dynamodb",
            target=f"{PREFIX}_gone",
        )
        is None
    )


def test_restore_verify_restores_compares_and_cleans_up(
    aw_dynamodb: Any, moto: MotoServer, in_process
):
    put_actors(aw_dynamodb, 5)
    leftover = f"awops-verify-{ACTORS}-20200101T000000Z"  # from a run that was killed
    create_table(aw_dynamodb, leftover, "id")
    awops = in_process(verify_env(moto))
    dry = awops.run("dynamodb-restore-verify", dry_run=True)
    assert dry.status == "ok"
    assert dry.summary.startswith("would restore 1 table(s)")

    result = awops.run("dynamodb-restore-verify")
    assert result.status == "ok", result.summary
    assert result.summary.startswith("restored 1 table(s) and matched their item counts")
    restore = result.details["restores"][ACTORS]
    assert restore["status"] == "VERIFIED"
    assert restore["source_items"] == restore["restored_items"] == 5
    assert restore["scratch_table"].startswith(f"awops-verify-{ACTORS}-")
    assert result.details["deleted_leftovers"] == [leftover]
    tables = aw_dynamodb.list_tables()["TableNames"]
    assert not [name for name in tables if name.startswith("awops-verify-")]
    assert (
        awops.value(
            "awops_backup_verify_last_success_timestamp_seconds", backend="dynamodb", target=ACTORS
        )
        is not None
    )
    duration = awops.value("awops_dynamodb_restore_duration_seconds", table=ACTORS)
    assert duration is not None and duration >= 0


def test_restore_verify_without_pitr_is_a_problem(moto: MotoServer, in_process):
    client = dynamodb_client(moto)
    create_table(client, ACTORS, "id", None, {"creator-index": "creator"})
    result = in_process(verify_env(moto)).run("dynamodb-restore-verify")
    assert result.status == "problem"
    assert result.summary == f"PITR is not ENABLED on {ACTORS}; nothing to restore from"


def test_restore_verify_deletes_the_scratch_table_when_counting_fails(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy, in_process
):
    put_actors(aw_dynamodb, 3)
    fault_proxy.fail_next(100, THROUGHPUT_EXCEEDED, operations=("Scan",))
    awops = in_process(
        verify_env(
            moto,
            AWS_DB_HOST=fault_proxy.url,
            AWOPS_DYNAMODB_MAX_ATTEMPTS="1",
            AWOPS_JOB_DYNAMODB_RESTORE_VERIFY_SCAN_SEGMENTS="1",
        )
    )
    result = awops.run("dynamodb-restore-verify")
    assert result.status == "error"
    assert f"DynamoDB throttled Scan {ACTORS} ({THROUGHPUT_EXCEEDED})" in result.summary
    assert "DeleteTable" in fault_proxy.requests
    tables = aw_dynamodb.list_tables()["TableNames"]
    assert not [name for name in tables if name.startswith("awops-verify-")]
    assert (
        awops.value(
            "awops_backup_verify_last_success_timestamp_seconds", backend="dynamodb", target=ACTORS
        )
        is None
    )


def test_pinned_backups_survive_retention(aw_dynamodb: Any, moto: MotoServer, in_process):
    from tests.fix_awops import run_awops

    old, older = f"awops-{ACTORS}-20200102T000000Z", f"awops-{ACTORS}-20200101T000000Z"
    for name in (older, old):
        aw_dynamodb.create_backup(TableName=ACTORS, BackupName=name)
    pinned = run_awops("backups", "pin", older, env=env(moto))
    assert pinned.returncode == 0, pinned.stderr

    # retention_count 1 and retention_days 35: both old backups are past either limit.
    awops = in_process(backup_env(moto, AWOPS_JOB_DYNAMODB_BACKUP_RETENTION_COUNT="1"))
    dry = awops.run("dynamodb-backup", dry_run=True)
    assert dry.details["deleted"][ACTORS] == [old]
    result = awops.run("dynamodb-backup")
    assert result.status == "ok", result.summary
    assert result.details["deleted"][ACTORS] == [old]
    assert result.details["pinned"][ACTORS] == [older]
    new = result.details["created"][ACTORS]["backup"]
    assert backup_names(aw_dynamodb, ACTORS) == sorted([older, new])
    assert awops.value("awops_dynamodb_backups", table=ACTORS) == 2

    unpinned = run_awops("backups", "unpin", older, env=env(moto))
    assert unpinned.returncode == 0, unpinned.stderr
    result = in_process(backup_env(moto, AWOPS_JOB_DYNAMODB_BACKUP_RETENTION_COUNT="1")).run(
        "dynamodb-backup"
    )
    assert older in result.details["deleted"][ACTORS]


def test_retention_deletes_nothing_when_the_pins_cannot_be_read(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy, in_process
):
    old = f"awops-{ACTORS}-20200101T000000Z"
    aw_dynamodb.create_backup(TableName=ACTORS, BackupName=old)
    fault_proxy.fail_next(10, "AccessDeniedException", operations=("Scan",))
    awops = in_process(
        backup_env(
            moto,
            AWS_DB_HOST=fault_proxy.url,
            AWOPS_JOB_DYNAMODB_BACKUP_TABLES="actors",
            AWOPS_JOB_DYNAMODB_BACKUP_RETENTION_COUNT="1",
        )
    )
    result = awops.run("dynamodb-backup")
    assert result.status == "error"
    assert "retention skipped, the backup pins cannot be read" in result.summary
    assert "AccessDeniedException" in result.summary
    assert result.details["deleted"] == {ACTORS: []}
    new = result.details["created"][ACTORS]["backup"]
    assert backup_names(aw_dynamodb, ACTORS) == sorted([old, new])


def test_restore_verify_reapplies_and_compares_the_settings(
    aw_dynamodb: Any, moto: MotoServer, in_process
):
    arn = aw_dynamodb.describe_table(TableName=ACTORS)["Table"]["TableArn"]
    aw_dynamodb.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "core"}])
    aw_dynamodb.update_table(TableName=ACTORS, DeletionProtectionEnabled=True)
    attributes = f"{PREFIX}_attributes"
    awops = in_process(
        verify_env(moto, AWOPS_JOB_DYNAMODB_RESTORE_VERIFY_TABLES="actors,attributes")
    )
    result = awops.run("dynamodb-restore-verify")
    assert result.status == "ok", result.summary
    for table in (ACTORS, attributes):
        restore = result.details["restores"][table]
        assert restore["status"] == "VERIFIED"
        assert set(restore["settings"].values()) == {"ok"}
        assert all(row["match"] for row in restore["comparison"]), restore["comparison"]
    rows = {row["setting"]: row for row in result.details["restores"][ACTORS]["comparison"]}
    assert rows["tags"]["restored"] == "team=core"
    assert rows["deletion protection"]["restored"] == "on"
    rows = {row["setting"]: row for row in result.details["restores"][attributes]["comparison"]}
    assert rows["ttl"]["restored"] == "enabled on ttl_timestamp"
    # The scratch tables went, deletion protection and all.
    tables = aw_dynamodb.list_tables()["TableNames"]
    assert not [name for name in tables if name.startswith("awops-verify-")]


def test_restore_verify_reports_a_setting_it_cannot_reapply(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy, in_process
):
    fault_proxy.fail_next(1, "AccessDeniedException", operations=("UpdateContinuousBackups",))
    awops = in_process(verify_env(moto, AWS_DB_HOST=fault_proxy.url))
    result = awops.run("dynamodb-restore-verify")
    assert result.status == "problem"
    assert f"settings of {ACTORS} on its restore: pitr failed: AccessDeniedException" in (
        result.summary
    )
    restore = result.details["restores"][ACTORS]
    assert restore["status"] == "SETTINGS_MISMATCH"
    assert (
        awops.value(
            "awops_backup_verify_last_success_timestamp_seconds", backend="dynamodb", target=ACTORS
        )
        is None
    )
    tables = aw_dynamodb.list_tables()["TableNames"]
    assert not [name for name in tables if name.startswith("awops-verify-")]

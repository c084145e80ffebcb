"""``awops backups list --backend dynamodb`` and ``backups pin`` / ``unpin`` of DynamoDB
backups, through the real CLI against moto's server."""

from __future__ import annotations

import json
from typing import Any

from tests.fix_awops import run_awops
from tests.fix_dynamodb import ACTINGWEB_TABLES
from tests.fix_faultproxy import FaultProxy
from tests.fix_moto import MotoServer

PREFIX = "demo_actingweb"
ACTORS = f"{PREFIX}_actors"
LOCKS = f"{PREFIX}_awops_locks"


def env(moto: MotoServer, **extra: str) -> dict[str, str]:
    return {**moto.aws_env(), "DATABASE_BACKEND": "dynamodb", **extra}


def awops_backup(client: Any, table: str, stamp: str) -> str:
    answer = client.create_backup(TableName=table, BackupName=f"awops-{table}-{stamp}")
    return str(answer["BackupDetails"]["BackupArn"])


def listing(moto: MotoServer, **extra: str) -> list[dict[str, Any]]:
    done = run_awops("backups", "list", "--backend", "dynamodb", "--json", env=env(moto, **extra))
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)["backups"]
    return entries


def test_list_shows_each_tables_window_and_every_backup(aw_dynamodb: Any, moto: MotoServer):
    older = awops_backup(aw_dynamodb, ACTORS, "20200101T000000Z")
    by_hand = aw_dynamodb.create_backup(TableName=ACTORS, BackupName="before-migration")
    entries = listing(moto)

    windows = [e for e in entries if e["kind"] == "pitr"]
    assert sorted(e["target"] for e in windows) == sorted(f"{PREFIX}_{s}" for s in ACTINGWEB_TABLES)
    for window in windows:
        assert window["backend"] == "dynamodb" and window["pitr"] == "ENABLED"
        assert window["earliest_restorable"].endswith("Z")
        assert window["latest_restorable"] == window["created"]
        assert window["recovery_period_days"] == 35 and window["complete"] is True

    backups = [e for e in entries if e["kind"] == "backup"]
    assert [b["name"] for b in backups] == ["before-migration", f"awops-{ACTORS}-20200101T000000Z"]
    mine, theirs = backups[1], backups[0]
    assert mine["id"] == older and mine["awops"] is True and mine["pinned"] is False
    assert theirs["id"] == by_hand["BackupDetails"]["BackupArn"] and theirs["awops"] is False
    for backup in backups:
        assert backup["target"] == ACTORS and backup["size_bytes"] > 0
        assert backup["created"].endswith("Z") and backup["complete"] is True
        assert backup["type"] == "USER" and backup["status"] == "AVAILABLE"

    human = run_awops("backups", "list", env=env(moto))
    assert human.returncode == 0, human.stderr
    assert "RESTORE POINT" in human.stdout and "before-migration" in human.stdout
    assert "backup (awops)" in human.stdout and "backup (user)" in human.stdout


def test_list_of_a_deleted_table_keeps_its_backups(aw_dynamodb: Any, moto: MotoServer):
    arn = awops_backup(aw_dynamodb, ACTORS, "20200101T000000Z")
    aw_dynamodb.delete_table(TableName=ACTORS)
    entries = listing(moto)
    window = next(e for e in entries if e["id"] == f"pitr:{ACTORS}")
    assert window["pitr"] == "TABLE_MISSING" and window["complete"] is False
    assert [e["id"] for e in entries if e["kind"] == "backup"] == [arn]


def test_pin_and_unpin_by_name_and_arn(aw_dynamodb: Any, moto: MotoServer):
    arn = awops_backup(aw_dynamodb, ACTORS, "20200101T000000Z")
    name = f"awops-{ACTORS}-20200101T000000Z"
    pinned = run_awops("backups", "pin", name, env=env(moto))
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == f"{name}: pinned on {arn} (table {ACTORS})"
    again = run_awops("backups", "pin", arn, env=env(moto))
    assert again.returncode == 0 and again.stdout.startswith(f"{arn}: already pinned on {arn}")
    assert next(e for e in listing(moto) if e["id"] == arn)["pinned"] is True
    item = aw_dynamodb.get_item(
        TableName=LOCKS, Key={"lock_key": {"S": f"pin#dynamodb-backup#{arn}"}}
    )["Item"]
    assert item["backup_name"] == {"S": name} and item["table"] == {"S": ACTORS}

    unpinned = run_awops("backups", "unpin", arn, env=env(moto))
    assert unpinned.returncode == 0, unpinned.stderr
    assert unpinned.stdout.startswith(f"{arn}: unpinned on {arn}")
    assert next(e for e in listing(moto) if e["id"] == arn)["pinned"] is False
    twice = run_awops("backups", "unpin", name, env=env(moto))
    assert twice.returncode == 0 and twice.stdout.startswith(f"{name}: was not pinned on {arn}")


def test_pin_refuses_what_is_not_an_awops_backup(aw_dynamodb: Any, moto: MotoServer):
    theirs = aw_dynamodb.create_backup(TableName=ACTORS, BackupName="before-migration")
    arn = theirs["BackupDetails"]["BackupArn"]
    other = "other_app_table"
    aw_dynamodb.create_table(
        TableName=other,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    foreign = awops_backup(aw_dynamodb, other, "20200101T000000Z")
    cases = {
        arn: "is not one of awops' backups of demo_actingweb_* tables",
        foreign: "is not one of awops' backups of demo_actingweb_* tables",
        arn[:-8] + "00000000": "does not exist",
        f"awops-{ACTORS}-20990101T000000Z": f"no backup named awops-{ACTORS}-20990101T000000Z",
    }
    for backup_id, message in cases.items():
        done = run_awops("backups", "pin", backup_id, env=env(moto))
        assert done.returncode == 1, (backup_id, done.stdout)
        assert message in done.stderr, (backup_id, done.stderr)
    # What looks like no backup id at all is a usage error: nothing is asked of AWS.
    done = run_awops("backups", "pin", "latest-please", env=env(moto))
    assert done.returncode == 2, done.stdout
    assert "is not a DynamoDB backup" in done.stderr
    assert LOCKS not in aw_dynamodb.list_tables()["TableNames"]


def test_unpin_removes_the_pin_of_a_backup_deleted_since(aw_dynamodb: Any, moto: MotoServer):
    arn = awops_backup(aw_dynamodb, ACTORS, "20200101T000000Z")
    assert run_awops("backups", "pin", arn, env=env(moto)).returncode == 0
    aw_dynamodb.delete_backup(BackupArn=arn)
    done = run_awops("backups", "unpin", arn, env=env(moto))
    assert done.returncode == 0, done.stderr
    assert aw_dynamodb.scan(TableName=LOCKS)["Items"] == []


def test_pins_that_cannot_be_read_are_shown_as_unknown(
    aw_dynamodb: Any, moto: MotoServer, fault_proxy: FaultProxy
):
    awops_backup(aw_dynamodb, ACTORS, "20200101T000000Z")
    fault_proxy.fail_next(10, "AccessDeniedException", operations=("Scan",))
    entries = listing(moto, AWS_DB_HOST=fault_proxy.url)
    assert [e["pinned"] for e in entries if e["kind"] == "backup"] == [None]


def test_pin_without_the_lock_table_and_without_leave_to_create_it(
    aw_dynamodb: Any, moto: MotoServer
):
    name = f"awops-{ACTORS}-20200101T000000Z"
    awops_backup(aw_dynamodb, ACTORS, "20200101T000000Z")
    done = run_awops("backups", "pin", name, env=env(moto, AWOPS_LOCK_CREATE_TABLE="false"))
    assert done.returncode == 1
    assert f"the table {LOCKS} that keeps pins does not exist" in done.stderr

"""What a backup knows for recovery day: roles, ActingWeb's revision and tables, its guards,
and the verify record beside it; against a real cluster."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from awops.backup.names import backup_id
from tests.fix_pg import PgDatabase
from tests.fix_schema import ACTINGWEB_TABLES, create_actingweb_schema
from tests.test_backups_cli import KEEP_ONLY_LAST, awops_json
from tests.test_pg_backup import fill, scratch_databases

REVISION = "b2f1c3d4e5a6"


def stamp_alembic(db: PgDatabase, revision: str = REVISION, schema: str = "public") -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{schema}".alembic_version '
            "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
        )
        conn.execute(f'INSERT INTO "{schema}".alembic_version VALUES (%s)', (revision,))


def manifest_of(target: Path, backup: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((target / f"{backup}.manifest.json").read_text())
    return document


def test_the_manifest_records_alembic_revision_tables_and_roles(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    stamp_alembic(aw_db)
    role = "aw_app_" + secrets.token_hex(3)
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-secret-pw'")
        conn.execute(f"GRANT pg_read_all_data TO {role}")
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))

    result = runner.run("pg-backup")

    assert result.status == "ok", result.summary
    assert result.details["alembic_revision"] == REVISION
    manifest = manifest_of(target, result.details["backup"])
    assert manifest["format_version"] == 3
    assert manifest["alembic_revision"] == REVISION
    assert manifest["actingweb_tables"] == sorted(f"public.{t}" for t in ACTINGWEB_TABLES)
    assert manifest["actingweb_schema"] == "public"
    assert manifest["problems"] == []
    roles = manifest["globals"]
    assert roles["status"] == "ok" and roles["file"] == f"{result.details['backup']}.globals.sql"
    text = (target / roles["file"]).read_bytes()
    assert roles["size_bytes"] == len(text)
    assert f"CREATE ROLE {role};".encode() in text
    assert f"GRANT pg_read_all_data TO {role}".encode() in text
    assert b"SCRAM-SHA-256" not in text and b"PASSWORD" not in text
    labels = {"backend": "postgresql", "target": f"file://{target}"}
    assert runner.value("awops_backup_globals_saved", **labels) == 1

    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    record = json.loads((target / f"{result.details['backup']}.verify.json").read_text())
    assert record["ok"] is True and record["problems"] == []
    assert record["at"].endswith("Z")
    assert record["tables"]["public.actors"] == {"rows": 300, "expected": 300}
    assert record["tables"]["public.alembic_version"] == {"rows": 1, "expected": 1}


def test_actingweb_in_its_own_schema(pg_db: PgDatabase, in_process: Any, tmp_path: Path):
    with pg_db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn, schema="aw_prod")
    stamp_alembic(pg_db, schema="aw_prod")
    target = tmp_path / "b"
    env = pg_db.awops_env(AWOPS_BACKUP_TARGET=str(target), PG_DB_PREFIX="aw_", PG_DB_SCHEMA="prod")
    result = in_process(env).run("pg-backup")
    assert result.status == "ok", result.summary
    manifest = manifest_of(target, result.details["backup"])
    assert manifest["actingweb_schema"] == "aw_prod"
    assert manifest["actingweb_tables"] == sorted(f"aw_prod.{t}" for t in ACTINGWEB_TABLES)
    assert manifest["alembic_revision"] == REVISION
    assert in_process(env).run("pg-backup-verify").status == "ok"


def test_verify_names_a_restored_revision_that_differs(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    stamp_alembic(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target))
    runner = in_process(env)
    backup = runner.run("pg-backup").details["backup"]
    # The manifest promises a newer schema than the dump holds: a restore of it would hand
    # the application a database its migrations do not expect.
    manifest = manifest_of(target, backup)
    manifest["alembic_revision"] = "c0ffee000001"
    manifest["actingweb_tables"].append("public.actor_sessions")
    (target / f"{backup}.manifest.json").write_text(json.dumps(manifest))

    verify = runner.run("pg-backup-verify")

    assert verify.status == "problem", verify.summary
    assert (
        "Alembic revision: the manifest says 'c0ffee000001', the restored database has "
        f"'{REVISION}'" in verify.summary
    )
    assert "not restored: public.actor_sessions" in " ".join(verify.details["differences"])
    assert scratch_databases(aw_db) == []
    record = json.loads((target / f"{backup}.verify.json").read_text())
    assert record["ok"] is False
    assert any("Alembic revision" in problem for problem in record["problems"])
    (listed,) = awops_json("backups", "list", env=env)["backups"]
    assert listed["verified"]["ok"] is False
    assert "last verify failed: " in listed["problems"][0]


def test_a_database_without_alembic_version_records_no_revision(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    result = runner.run("pg-backup")
    assert result.status == "ok", result.summary
    assert manifest_of(target, result.details["backup"])["alembic_revision"] == ""
    assert runner.run("pg-backup-verify").status == "ok"


def test_a_manifest_of_format_2_still_verifies(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    fill(aw_db)
    stamp_alembic(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target))
    runner = in_process(env)
    backup = runner.run("pg-backup").details["backup"]
    manifest = manifest_of(target, backup)
    for field in ("alembic_revision", "actingweb_tables", "actingweb_schema", "globals"):
        del manifest[field]
    del manifest["problems"]
    manifest["format_version"] = 2
    (target / f"{backup}.manifest.json").write_text(json.dumps(manifest))
    verify = runner.run("pg-backup-verify")
    assert verify.status == "ok", verify.summary
    (listed,) = awops_json("backups", "list", env=env)["backups"]
    assert listed["globals"] == "" and listed["complete"] is True


def test_a_flipped_byte_is_recorded_as_a_failed_verify(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target))
    runner = in_process(env)
    backup = runner.run("pg-backup").details["backup"]
    dump = target / f"{backup}.dump"
    data = bytearray(dump.read_bytes())
    data[100] ^= 0x01
    dump.write_bytes(bytes(data))
    assert runner.run("pg-backup-verify").status == "problem"
    record = json.loads((target / f"{backup}.verify.json").read_text())
    assert record["ok"] is False and record["tables"] == {}
    assert "sha256 mismatch" in record["problems"][0]


# --- the guards -----------------------------------------------------------------------------


def test_an_empty_actingweb_database_passes_the_size_guard(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    result = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(tmp_path / "b"))).run("pg-backup")
    assert result.status == "ok", result.summary
    assert result.details["size_bytes"] > 4096 * 2  # measured ~14 KB; the default is 4 KiB


def test_the_empty_dump_of_the_wrong_database_is_kept_but_a_problem(
    pg_db: PgDatabase, in_process: Any, tmp_path: Path
):
    target = tmp_path / "b"
    env = pg_db.awops_env(AWOPS_BACKUP_TARGET=str(target))
    result = in_process(env).run("pg-backup")

    assert result.status == "problem", result.summary
    assert "under min_size_bytes (4096): an empty or wrong database?" in result.summary
    backup = result.details["backup"]
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{backup}{suffix}" for suffix in (".dump", ".globals.sql", ".manifest.json")
    )
    assert manifest_of(target, backup)["problems"] == result.details["problems"]
    (listed,) = awops_json("backups", "list", env=env)["backups"]
    assert listed["kept_by"] == ["flagged"]
    assert "under min_size_bytes" in listed["problems"][0]
    off = in_process({**env, "AWOPS_JOB_PG_BACKUP_MIN_SIZE_BYTES": "0"}).run("pg-backup")
    assert off.status == "ok", off.summary


def test_a_row_drop_is_a_problem_and_never_pushes_good_backups_out(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), **KEEP_ONLY_LAST)
    runner = in_process(env)
    good = runner.run("pg-backup")
    assert good.status == "ok", good.summary
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM attributes")
        conn.execute("DELETE FROM actors WHERE id <> 'a1'")

    dropped = runner.run("pg-backup")

    assert dropped.status == "problem", dropped.summary
    assert (
        f"total rows fell from 801 to 2 (100%) since backup {good.details['backup']}, "
        "more than max_row_drop_ratio (0.5): the right database?"
    ) in dropped.summary
    # keep_last = 1, yet the good backup stays: the flagged one takes no place.
    assert dropped.details["retention_deleted"] == {f"file://{target}": []}
    listed = {b["id"]: b for b in awops_json("backups", "list", env=env)["backups"]}
    assert listed[good.details["backup"]]["kept_by"] == ["last"]
    assert listed[dropped.details["backup"]]["kept_by"] == ["flagged"]

    # The next backup compares with the one before it (2 rows): no drop. keep_last = 1
    # now keeps it, retention lets the old good one go and still keeps the flagged one.
    steady = runner.run("pg-backup")
    assert steady.status == "ok", steady.summary
    assert steady.details["retention_deleted"] == {f"file://{target}": [good.details["backup"]]}
    assert (target / f"{dropped.details['backup']}.manifest.json").exists()
    ratio_off = in_process({**env, "AWOPS_JOB_PG_BACKUP_MAX_ROW_DROP_RATIO": "1"})
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM actors")
    assert ratio_off.run("pg-backup").status == "ok"


# --- roles ----------------------------------------------------------------------------------


def test_roles_are_skipped_with_the_servers_refusal_and_the_backup_goes_on(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    """A real refusal: a backup role that is no superuser, in a database whose owner revoked
    reading pg_auth_members from PUBLIC (as hardened and managed servers restrict catalogs).
    pg_dumpall reads it for role memberships and the server says no; pg_dump does not."""
    fill(aw_db)
    role = "aw_backup_" + secrets.token_hex(3)
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'backup-pw'")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute("REVOKE SELECT ON pg_catalog.pg_auth_members FROM PUBLIC")
    target = tmp_path / "b"
    env = aw_db.awops_env(
        AWOPS_BACKUP_TARGET=str(target), PG_DB_USER=role, PG_DB_PASSWORD="backup-pw"
    )
    runner = in_process(env)

    result = runner.run("pg-backup")

    assert result.status == "ok", result.summary
    assert "roles not saved (pg_dumpall --globals-only failed (exit 1)" in result.summary
    roles = manifest_of(target, result.details["backup"])["globals"]
    assert roles["status"] == "skipped"
    assert "permission denied for table pg_auth_members" in roles["reason"]
    assert (roles["file"], roles["sha256"], roles["size_bytes"]) == ("", "", 0)
    assert not list(target.glob("*.globals.sql*"))
    labels = {"backend": "postgresql", "target": f"file://{target}"}
    assert runner.value("awops_backup_globals_saved", **labels) == 0
    (listed,) = awops_json("backups", "list", env=env)["backups"]
    assert listed["globals"] == "skipped"
    checked = awops_json("backups", "check", env=env)
    assert checked["ok"] is True


def test_dump_globals_false_skips_the_roles(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    fill(aw_db)
    target = tmp_path / "b"
    env = aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), AWOPS_JOB_PG_BACKUP_DUMP_GLOBALS="false")
    result = in_process(env).run("pg-backup")
    assert result.status == "ok", result.summary
    roles = manifest_of(target, result.details["backup"])["globals"]
    assert roles == {
        "file": "",
        "reason": "dump_globals = false",
        "sha256": "",
        "size_bytes": 0,
        "status": "skipped",
    }


def test_retention_deletes_every_object_of_a_backup(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target), **KEEP_ONLY_LAST))
    first = runner.run("pg-backup").details["backup"]
    assert runner.run("pg-backup-verify").status == "ok"
    assert len(list(target.glob(f"{first}.*"))) == 4  # dump, roles, manifest, verify record
    second = runner.run("pg-backup")
    assert second.details["retention_deleted"] == {f"file://{target}": [first]}
    assert list(target.glob(f"{first}.*")) == []


def test_roles_left_by_a_run_that_died_are_removed_a_day_later(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    target = tmp_path / "b"
    target.mkdir()
    old = backup_id(aw_db.name, time.time() - 2 * 86400)
    recent = backup_id(aw_db.name, time.time() - 600)
    for name in (f"{old}.globals.sql", f"{old}.globals.sql.age", f"{recent}.globals.sql"):
        (target / name).write_text("-- roles\n")
    result = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target))).run("pg-backup")
    assert result.status == "ok", result.summary
    assert not list(target.glob(f"{old}.*"))
    assert (target / f"{recent}.globals.sql").exists()


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"file": "x.globals.sql", "size_bytes": 1, "sha256": "0" * 64, "status": "ok"}, "globals"),
    ],
)
def test_a_manifest_naming_another_roles_object_is_unreadable(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path, entry: dict[str, Any], field: str
):
    target = tmp_path / "b"
    runner = in_process(aw_db.awops_env(AWOPS_BACKUP_TARGET=str(target)))
    backup = runner.run("pg-backup").details["backup"]
    manifest = manifest_of(target, backup)
    manifest[field] = entry
    (target / f"{backup}.manifest.json").write_text(json.dumps(manifest))
    verify = runner.run("pg-backup-verify")
    assert verify.status == "problem"
    assert "field 'globals' names 'x.globals.sql'" in verify.summary

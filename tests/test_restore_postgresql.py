"""awops restore postgresql: round trips from each target, refusals, damage caught early."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fix_awops import run_awops
from tests.fix_moto import MotoServer
from tests.fix_pg import PgCluster, PgDatabase
from tests.test_pg_backup import fill

BUCKET = "awops-restore"


def make_age_key(tmp_path: Path, name: str = "key.txt") -> tuple[Path, str]:
    """An age identity file and its recipient, made by Debian's age-keygen."""
    key = tmp_path / name
    made = subprocess.run(["age-keygen", "-o", str(key)], capture_output=True, text=True)
    return key, made.stderr.split("Public key: ")[1].strip()


def database_exists(cluster: PgCluster, name: str) -> bool:
    with cluster.connect(autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def tables_of(cluster: PgCluster, name: str) -> list[str]:
    with cluster.connect(name) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def indexes_of(cluster: PgCluster, name: str, table: str) -> list[str]:
    with cluster.connect(name) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", (table,)
        ).fetchall()
    return [row[0] for row in rows]


def rows_of(cluster: PgCluster, name: str, table: str) -> int:
    with cluster.connect(name) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    assert row is not None
    return int(row[0])


def restore(env: dict[str, str], *args: str, timeout: float = 180) -> tuple[int, Any, str]:
    """Run ``awops restore postgresql ... --json``: exit code, the document (or None), stderr."""
    done = run_awops("restore", "postgresql", *args, "--json", env=env, timeout=timeout)
    document = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, document, done.stderr


def s3_env(db: PgDatabase, moto: MotoServer, **extra: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-1"})
    return db.awops_env(
        **moto.aws_env(),
        AWOPS_BACKUP_TARGET=f"s3://{BUCKET}/pg",
        AWOPS_BACKUP_S3_ENDPOINT_URL=moto.url,
        **extra,
    )


def backup_env(
    db: PgDatabase, tmp_path: Path, where: str, encrypted: bool, moto: MotoServer | None
) -> dict[str, str]:
    """The environment of a pg-backup (and a restore) to a directory or moto's S3."""
    extra = {}
    if encrypted:
        key, recipient = make_age_key(tmp_path)
        extra = {
            "AWOPS_JOB_PG_BACKUP_RECIPIENTS": recipient,
            "AWOPS_JOB_PG_BACKUP_VERIFY_IDENTITY_FILE": str(key),
        }
    if where == "s3":
        assert moto is not None
        return s3_env(db, moto, **extra)
    return db.awops_env(AWOPS_BACKUP_TARGET=f"file://{tmp_path / 'backups'}", **extra)


def take_backup(in_process: Any, env: dict[str, str]) -> str:
    result = in_process(env).run("pg-backup")
    assert result.status == "ok", result.summary
    return str(result.details["backup"])


def edit_manifest(directory: Path, change: Any) -> dict[str, Any]:
    """Apply ``change`` to the only manifest in ``directory``; returns the new document."""
    (path,) = directory.glob("*.manifest.json")
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return document


@pytest.mark.parametrize(
    ("where", "encrypted"),
    [("file", False), ("file", True), ("s3", False), ("s3", True)],
    ids=["file", "file-age", "s3", "s3-age"],
)
def test_round_trip(
    aw_db: PgDatabase,
    in_process: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    where: str,
    encrypted: bool,
):
    expected = fill(aw_db)
    moto = request.getfixturevalue("moto") if where == "s3" else None
    env = backup_env(aw_db, tmp_path, where, encrypted, moto)
    backup = take_backup(in_process, env)
    work = tmp_path / "work"
    work.mkdir()
    name = f"{aw_db.name}_restored"

    code, document, stderr = restore(env, "latest", "--to-database", name, "--work-dir", str(work))

    assert code == 0, stderr
    assert document["ok"] is True
    assert document["backup"] == backup
    assert document["database"] == name
    assert document["database_created"] is True
    assert document["duration_seconds"] > 0
    assert document["tables"]["actors"] == {"schema": "public", "rows": 300, "expected": 300}
    assert document["tables"]["attributes"]["rows"] == expected["public.attributes"]
    assert len(document["tables"]) == 9
    assert rows_of(aw_db.cluster, name, "attributes") == expected["public.attributes"]
    assert indexes_of(aw_db.cluster, name, "attributes") == [
        "attributes_pkey",
        "idx_attributes_chain_id",
        "idx_attributes_ttl",
    ]
    # Progress went to the log: the bytes fetched and pg_restore's phases.
    assert "fetched dump of" in stderr
    assert "pg_restore: data" in stderr
    assert document["pg_restore_phases"] == ["schema", "data", "indexes and constraints"]
    # The staged copy (S3, or decrypted) went with the work directory's temporary folder.
    assert list(work.iterdir()) == []


def test_restore_by_id_and_the_table_printed(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    fill(aw_db)
    env = backup_env(aw_db, tmp_path, "file", False, None)
    first = take_backup(in_process, env)
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM actors WHERE id <> 'a1'")
    take_backup(in_process, env)
    name = f"{aw_db.name}_first"

    done = run_awops("restore", "postgresql", first, "--to-database", name, env=env)

    assert done.returncode == 0, done.stderr
    assert "public.actors" in done.stdout and "300" in done.stdout
    assert f"restored {first} into {name}" in done.stdout
    assert rows_of(aw_db.cluster, name, "actors") == 300

    # latest is the second backup: one actor.
    code, document, _ = restore(env, "latest", "--to-database", f"{aw_db.name}_second")
    assert code == 0
    assert document["tables"]["actors"]["rows"] == 1


def test_table_restores_that_table_with_its_indexes_and_constraints(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    expected = fill(aw_db)
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO property_lookup VALUES ('email', 'x@example.com', 'a1')")
    env = backup_env(aw_db, tmp_path, "file", False, None)
    take_backup(in_process, env)
    side = f"{aw_db.name}_side"

    code, document, stderr = restore(
        env, "latest", "--to-database", side, "--table", "attributes", "--table", "property_lookup"
    )

    assert code == 0, stderr
    assert tables_of(aw_db.cluster, side) == ["public.attributes", "public.property_lookup"]
    assert set(document["tables"]) == {"attributes", "property_lookup"}
    assert document["tables"]["attributes"]["rows"] == expected["public.attributes"]
    assert document["selected_tables"] == ["public.attributes", "public.property_lookup"]
    assert indexes_of(aw_db.cluster, side, "attributes") == [
        "attributes_pkey",
        "idx_attributes_chain_id",
        "idx_attributes_ttl",
    ]
    assert indexes_of(aw_db.cluster, side, "property_lookup") == [
        "idx_property_lookup_actor_id",
        "property_lookup_pkey",
    ]
    # Its foreign key to actors, which is not restored, is left out and named.
    (skipped,) = document["skipped_foreign_keys"]
    assert "fk_property_lookup_actor" in skipped and "public.actors" in skipped
    assert document["alembic"]["checked"] is False


def test_a_database_holding_a_table_is_refused_and_left_untouched(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    env = backup_env(aw_db, tmp_path, "file", False, None)
    take_backup(in_process, env)
    existing = aw_db.cluster.create_database()
    with existing.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE keep_me (v int)")
        conn.execute("INSERT INTO keep_me VALUES (42)")

    code, document, stderr = restore(env, "latest", "--to-database", existing.name)

    assert code == 1
    assert document["ok"] is False
    assert f"--replace {existing.name}" in document["error"]
    assert "public.keep_me" in document["error"]
    assert document["database_created"] is False
    assert tables_of(aw_db.cluster, existing.name) == ["public.keep_me"]
    assert rows_of(aw_db.cluster, existing.name, "keep_me") == 1

    # Naming another database with --replace is a usage error: exit 2, nothing touched.
    code, _, stderr = restore(
        env, "latest", "--to-database", existing.name, "--replace", aw_db.name
    )
    assert code == 2
    assert "--replace must repeat the --to-database name" in stderr
    assert tables_of(aw_db.cluster, existing.name) == ["public.keep_me"]

    # Repeating its name: the backup's objects are written in; its own table stays.
    code, document, stderr = restore(
        env, "latest", "--to-database", existing.name, "--replace", existing.name
    )
    assert code == 0, stderr
    assert document["replaced"] is True and document["database_created"] is False
    assert "public.keep_me" in tables_of(aw_db.cluster, existing.name)
    assert rows_of(aw_db.cluster, existing.name, "actors") == 300

    # Again, over the restored tables: dropped and re-created, counts still match.
    code, document, stderr = restore(
        env, "latest", "--to-database", existing.name, "--replace", existing.name
    )
    assert code == 0, stderr
    assert rows_of(aw_db.cluster, existing.name, "actors") == 300


@pytest.mark.parametrize("where", ["file", "s3"])
def test_a_flipped_byte_is_caught_before_the_database_is_touched(
    aw_db: PgDatabase,
    in_process: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    where: str,
):
    fill(aw_db)
    moto = request.getfixturevalue("moto") if where == "s3" else None
    env = backup_env(aw_db, tmp_path, where, encrypted=where == "s3", moto=moto)
    take_backup(in_process, env)
    if where == "s3":
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-west-1")  # type: ignore[union-attr]
        (key,) = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
            if o["Key"].endswith(".dump.age")
        ]
        data = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0x01
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    else:
        (dump,) = (tmp_path / "backups").glob("*.dump")
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0x01
        dump.write_bytes(bytes(data))
    empty = aw_db.cluster.create_database()  # exists, holds nothing: it may be restored into
    missing = f"{aw_db.name}_never"

    for name in (empty.name, missing):
        code, document, _ = restore(env, "latest", "--to-database", name)
        assert code == 1
        assert "sha256" in document["error"] and "nothing restored" in document["error"]
        assert document["database_created"] is False
    assert tables_of(aw_db.cluster, empty.name) == []
    assert not database_exists(aw_db.cluster, missing)


@pytest.mark.parametrize("where", ["file", "s3"])
def test_a_table_of_contents_that_cannot_be_read_drops_the_database_made_meanwhile(
    aw_db: PgDatabase,
    in_process: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    where: str,
):
    """``pg_restore --list`` runs beside the hash (a dump read in place) or beside CREATE
    DATABASE (a fetched one); read only once the database exists, its failure drops it again
    and pg_restore itself never runs."""
    fill(aw_db)
    moto = request.getfixturevalue("moto") if where == "s3" else None
    env = backup_env(aw_db, tmp_path, where, encrypted=False, moto=moto)
    take_backup(in_process, env)
    calls = tmp_path / "calls.txt"
    script = tmp_path / "pg_restore_without_list"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        "case \" $* \" in *' --list '*)\n"
        "  echo 'pg_restore: error: could not read the archive' >&2; exit 1;;\n"
        "esac\n"
        f'exec {shutil.which("pg_restore")} "$@"\n'
    )
    script.chmod(0o755)
    env["AWOPS_JOB_PG_BACKUP_VERIFY_PG_RESTORE"] = str(script)
    name = f"{aw_db.name}_toc"

    code, document, stderr = restore(env, "latest", "--to-database", name)

    assert code == 1, stderr
    assert "pg_restore --list failed" in document["error"]
    assert "could not read the archive" in document["error"]
    assert document["database_created"] is True and document["database_dropped"] is True
    assert not database_exists(aw_db.cluster, name)
    ran = calls.read_text().splitlines()
    assert any("--list" in line for line in ran)
    assert not any("--dbname" in line for line in ran), ran


def test_backup_ids_and_targets(aw_db: PgDatabase, in_process: Any, tmp_path: Path):
    fill(aw_db)
    env = backup_env(aw_db, tmp_path, "file", False, None)
    take_backup(in_process, env)
    name = f"{aw_db.name}_x"
    unknown = f"{aw_db.name}-20200101T000000.000Z"

    code, document, _ = restore(env, unknown, "--to-database", name)
    assert code == 1
    assert f"backup {unknown} not found on file://{tmp_path / 'backups'}" in document["error"]

    for args, message in (
        (["not-a-backup"], "expected 'latest' or a backup id"),
        (["latest", "--target", "file://relative/x"], "--target"),
        (["latest", "--table", "no_such_table"], "holds no such table"),
        (["latest", "--jobs", "0"], "--jobs"),
    ):
        code, _, stderr = restore(env, *args, "--to-database", name)
        assert code == 2, (args, stderr)
        assert message in stderr
    code, _, stderr = restore({**env, "AWOPS_BACKUP_TARGET": ""}, "--to-database", name)
    assert code == 2 and "no backup target" in stderr
    code, _, stderr = restore({**env, "PG_DB_PORT": "not-a-port"}, "--to-database", name)
    assert code == 2 and "PG_DB_PORT" in stderr
    assert not database_exists(aw_db.cluster, name)


def test_counts_alembic_and_versions_are_checked(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    with aw_db.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('4f2a9c1d7e3b')")
    env = backup_env(aw_db, tmp_path, "file", False, None)
    take_backup(in_process, env)
    target = tmp_path / "backups"
    tables = ["actors", "attributes", "properties", "property_lookup", "trusts"]

    def record_actingweb(document: dict[str, Any]) -> None:
        # What pg-backup records of an ActingWeb database; an older pg-backup recorded none.
        document.setdefault("alembic_revision", "4f2a9c1d7e3b")
        document.setdefault("actingweb_tables", tables)

    edit_manifest(target, record_actingweb)
    code, document, stderr = restore(env, "latest", "--to-database", f"{aw_db.name}_a")
    assert code == 0, stderr
    assert document["alembic"] == {
        "checked": True,
        "expected": "4f2a9c1d7e3b",
        "restored": "4f2a9c1d7e3b",
        "ok": True,
    }
    assert document["actingweb_tables"]["ok"] is True

    def lie(document: dict[str, Any]) -> None:
        document["alembic_revision"] = "0000aaaa1111"
        document["actingweb_tables"] = [*tables, "trust_permissions"]
        document["table_rows"]["public.actors"] += 1

    edit_manifest(target, lie)
    name = f"{aw_db.name}_b"
    code, document, _ = restore(env, "latest", "--to-database", name)
    assert code == 1
    assert document["tables"]["actors"] == {"schema": "public", "rows": 300, "expected": 301}
    problems = " ".join(document["problems"])
    assert "public.actors: manifest 301 rows, restored 300" in problems
    assert "Alembic revision 4f2a9c1d7e3b restored, the manifest records 0000aaaa1111" in problems
    assert "trust_permissions" in problems
    # Restored, but not as the manifest says: kept for inspection, not dropped.
    assert database_exists(aw_db.cluster, name)

    def newer_pg_dump(document: dict[str, Any]) -> None:
        document["pg_dump_version"] = "pg_dump (PostgreSQL) 99.1"

    edit_manifest(target, newer_pg_dump)
    name = f"{aw_db.name}_c"
    code, document, _ = restore(env, "latest", "--to-database", name)
    assert code == 1
    assert "pg_restore must be at least as new" in document["error"]
    assert not database_exists(aw_db.cluster, name)


def test_an_old_manifest_restores_and_says_what_it_could_not_check(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path
):
    fill(aw_db)
    env = backup_env(aw_db, tmp_path, "file", False, None)
    take_backup(in_process, env)

    def old(document: dict[str, Any]) -> None:
        for field in ("alembic_revision", "actingweb_tables", "globals", "snapshot_time"):
            document.pop(field, None)
        document["format_version"] = 1

    edit_manifest(tmp_path / "backups", old)
    code, document, stderr = restore(env, "latest", "--to-database", f"{aw_db.name}_old")
    assert code == 0, stderr
    assert document["alembic"] == {"checked": False, "reason": "the manifest records no revision"}

    code, document, _ = restore(env, "latest", "--to-database", f"{aw_db.name}_g", "--globals")
    assert code == 1
    assert "has no roles object" in document["error"]
    assert not database_exists(aw_db.cluster, f"{aw_db.name}_g")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

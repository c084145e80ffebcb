"""awops restore postgresql --globals: a restore into a fresh cluster finds ActingWeb's role."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.fix_pg import SUPERUSER, PgCluster, PgDatabase
from tests.fix_schema import create_actingweb_schema
from tests.test_pg_backup import fill
from tests.test_restore_postgresql import database_exists, make_age_key, restore, tables_of

APP_ROLE = "actingweb"


def actingweb_cluster(make_cluster: Any) -> PgDatabase:
    """A cluster where ActingWeb's role owns its database and every table in it."""
    cluster: PgCluster = make_cluster()
    with cluster.connect(autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD 'app-secret' CONNECTION LIMIT 20")
        conn.execute('CREATE ROLE "aw readers" NOLOGIN')
        conn.execute(f'GRANT "aw readers" TO {APP_ROLE}')
        conn.execute(f"COMMENT ON ROLE {APP_ROLE} IS 'ActingWeb; the app''s role'")
        conn.execute("CREATE ROLE ops_admin LOGIN SUPERUSER")
        conn.execute(f"CREATE DATABASE actingweb OWNER {APP_ROLE}")
    db = PgDatabase(cluster, "actingweb")
    with db.connect(autocommit=True) as conn:
        conn.execute(f"SET ROLE {APP_ROLE}")
        create_actingweb_schema(conn)
        conn.execute('GRANT SELECT ON attributes TO "aw readers"')
    fill(db)
    return db


def add_globals_object(cluster: PgCluster, target: Path, recipient: str = "") -> None:
    """Give the backup in ``target`` its roles object, as pg-backup writes it
    (``pg_dumpall --globals-only --no-role-passwords``, age-encrypted with ``recipient``),
    unless pg-backup wrote one already."""
    (manifest_path,) = target.glob("*.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("globals", {}).get("status") == "ok":
        return
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(cluster.port),
        "PGUSER": SUPERUSER,
        "PGPASSWORD": cluster.password,
    }
    script = subprocess.run(
        ["pg_dumpall", "--globals-only", "--no-role-passwords"],
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    name = f"{manifest['backup']}.globals.sql"
    if recipient:
        script = subprocess.run(
            ["age", "-r", recipient], input=script, capture_output=True, check=True
        ).stdout
        name += ".age"
    path = target / name
    path.write_bytes(script)
    path.chmod(0o600)
    manifest["globals"] = {
        "file": name,
        "size_bytes": len(script),
        "sha256": hashlib.sha256(script).hexdigest(),
        "status": "ok",
        "reason": "",
    }
    manifest_path.write_text(json.dumps(manifest))


def fresh_env(fresh: PgCluster, target: Path, **extra: str) -> dict[str, str]:
    """awops beside the new cluster: ActingWeb's database name, which does not exist yet."""
    return PgDatabase(fresh, "actingweb").awops_env(AWOPS_BACKUP_TARGET=f"file://{target}", **extra)


def test_globals_into_a_fresh_cluster(pg_cluster_factory: Any, in_process: Any, tmp_path: Path):
    source = actingweb_cluster(pg_cluster_factory)
    target = tmp_path / "backups"
    key, recipient = make_age_key(tmp_path)
    backup_env = source.awops_env(
        AWOPS_BACKUP_TARGET=f"file://{target}", AWOPS_JOB_PG_BACKUP_RECIPIENTS=recipient
    )
    assert in_process(backup_env).run("pg-backup").status == "ok"
    add_globals_object(source.cluster, target, recipient)
    fresh = pg_cluster_factory()
    with fresh.connect(autocommit=True) as conn:
        # A role of the same name that exists already is left exactly as it is.
        conn.execute("CREATE ROLE ops_admin NOLOGIN")
    env = fresh_env(fresh, target)

    # Without the roles, keeping the owners fails: the database it created is dropped.
    code, document, _ = restore(
        env, "--to-database", "actingweb", "--owner", "--identity", str(key)
    )
    assert code == 1
    assert f'role "{APP_ROLE}" does not exist' in document["error"]
    assert document["database_dropped"] is True
    assert not database_exists(fresh, "actingweb")

    code, document, stderr = restore(
        env, "--to-database", "actingweb", "--globals", "--owner", "--identity", str(key)
    )

    assert code == 0, stderr
    assert sorted(document["globals"]["roles_created"]) == ["actingweb", "aw readers"]
    assert sorted(document["globals"]["roles_skipped"]) == ["ops_admin", "postgres"]
    with fresh.connect(autocommit=True) as conn:
        roles = dict(
            conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN "
                "('actingweb', 'aw readers', 'ops_admin')"
            ).fetchall()
        )
        assert roles == {"actingweb": True, "aw readers": False, "ops_admin": False}
        row = conn.execute(
            "SELECT rolconnlimit, rolpassword IS NULL, shobj_description(oid, 'pg_authid') "
            "FROM pg_authid WHERE rolname = 'actingweb'"
        ).fetchone()
        assert row == (20, True, "ActingWeb; the app's role")
        member = conn.execute("SELECT pg_has_role('actingweb', 'aw readers', 'MEMBER')").fetchone()
        assert member == (True,)
        super_row = conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'ops_admin'"
        ).fetchone()
        assert super_row == (False,)
    with fresh.connect("actingweb") as conn:
        owners = {
            row[0]
            for row in conn.execute(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        assert owners == {APP_ROLE}
        grant = conn.execute(
            "SELECT has_table_privilege('aw readers', 'public.attributes', 'SELECT')"
        ).fetchone()
        assert grant == (True,)
    assert "public.attributes" in tables_of(fresh, "actingweb")
    assert document["tables"]["attributes"]["rows"] == 500

    # Once more into another database: every role exists now and is skipped.
    code, document, stderr = restore(
        env, "--to-database", "actingweb_again", "--globals", "--identity", str(key)
    )
    assert code == 0, stderr
    assert document["globals"]["roles_created"] == []


def test_a_damaged_roles_object_is_caught_before_anything_is_created(
    pg_cluster_factory: Any, in_process: Any, tmp_path: Path
):
    source = actingweb_cluster(pg_cluster_factory)
    target = tmp_path / "backups"
    assert (
        in_process(source.awops_env(AWOPS_BACKUP_TARGET=str(target))).run("pg-backup").status
        == "ok"
    )
    add_globals_object(source.cluster, target)
    (roles,) = target.glob("*.globals.sql")
    roles.write_text(roles.read_text().replace("CREATE ROLE actingweb", "CREATE ROLE actingwex"))
    fresh = pg_cluster_factory()

    code, document, _ = restore(fresh_env(fresh, target), "--to-database", "actingweb", "--globals")

    assert code == 1
    assert "sha256" in document["error"]
    assert not database_exists(fresh, "actingweb")
    with fresh.connect() as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname LIKE 'actingwe%'").fetchall() == []
        )

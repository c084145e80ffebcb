"""The restore's parts: roles scripts, tables of contents, progress, requests, stops, space."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from awops.backup.fetch import fetch_object
from awops.backup.manifest import ACTINGWEB_FORMAT_VERSION, Manifest, ManifestError
from awops.backup.targets.local import LocalTarget
from awops.config import load_config
from awops.registry import builtin_registry
from awops.restore import (
    RestoreError,
    RestoreInterrupted,
    RestoreRequest,
    RestoreUsageError,
)
from awops.restore.checks import TableCount
from awops.restore.fetch import Fetcher, StoredObject, check_free_space
from awops.restore.globals import plan_globals, split_statements
from awops.restore.manifest_fields import read_facts
from awops.restore.postgresql import PostgresRestore, setup_from_config
from awops.restore.progress import RestoreProgress
from awops.restore.report import RestoreReport
from awops.restore.stopping import StopRequest
from awops.restore.toc import parse_toc, select_tables
from tests.fix_awops import clean_environ
from tests.fix_pg import PgDatabase
from tests.test_pg_backup import fill
from tests.test_restore_postgresql import (
    backup_env,
    database_exists,
    indexes_of,
    restore,
    tables_of,
    take_backup,
)

DUMPALL = '''--
-- PostgreSQL database cluster dump
--

\\restrict 0m8kjfWNoPt5Iz7hrdl7Qs91MJ

SET default_transaction_read_only = off;
SET client_encoding = 'UTF8';

CREATE ROLE actingweb;
ALTER ROLE actingweb WITH NOSUPERUSER INHERIT NOCREATEROLE CREATEDB LOGIN NOREPLICATION;
COMMENT ON ROLE actingweb IS 'the app; it''s -- here';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE "weird ""role""";
ALTER ROLE "weird ""role""" WITH NOLOGIN;
ALTER ROLE actingweb SET work_mem TO '8MB';
ALTER ROLE actingweb IN DATABASE actingweb SET statement_timeout TO '5s';
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
GRANT "weird ""role""" TO actingweb GRANTED BY postgres;
GRANT actingweb TO postgres WITH ADMIN OPTION GRANTED BY postgres;

\\unrestrict 0m8kjfWNoPt5Iz7hrdl7Qs91MJ
'''


def test_split_statements_keeps_quotes_and_drops_comments_and_meta_commands():
    statements = split_statements(DUMPALL)
    assert statements[0] == "SET default_transaction_read_only = off"
    assert "COMMENT ON ROLE actingweb IS 'the app; it''s -- here'" in statements
    assert 'CREATE ROLE "weird ""role"""' in statements
    assert not any(s.startswith("\\") or "restrict" in s for s in statements)
    assert len(statements) == 14


def test_plan_globals_creates_only_missing_roles_and_leaves_existing_ones_alone():
    plan = plan_globals(DUMPALL, existing_roles={"postgres", "actingweb"})
    assert plan.created == ['weird "role"']
    assert plan.skipped == ["actingweb", "postgres"]
    assert plan.statements == [
        "SET default_transaction_read_only = off",
        "SET client_encoding = 'UTF8'",
        'CREATE ROLE "weird ""role"""',
        'ALTER ROLE "weird ""role""" WITH NOLOGIN',
    ]
    assert any("TABLESPACE" in s for s in plan.not_applied)
    assert any("IN DATABASE" in s for s in plan.not_applied)

    fresh = plan_globals(DUMPALL, existing_roles={"postgres"})
    assert fresh.created == ["actingweb", 'weird "role"']
    # Memberships of new roles, granted by whoever restores: the old grantor may not exist.
    assert 'GRANT "weird ""role""" TO actingweb' in fresh.statements
    assert "ALTER ROLE actingweb SET work_mem TO '8MB'" in fresh.statements
    assert not any("GRANTED BY" in s for s in fresh.statements)
    assert not any(s.startswith("GRANT actingweb TO postgres") for s in fresh.statements)


LISTING = """;
; Archive created at 2026-12-05 23:44:25 UTC
;     Dumped by pg_dump version: 15.20 (Debian 15.20-0+deb12u1)
;
214; 1259 16385 TABLE public actors postgres
222; 1259 16452 TABLE public attributes postgres
3438; 0 0 ACL public TABLE attributes postgres
3500; 0 0 COMMENT public COLUMN attributes.ttl_timestamp postgres
216; 1259 16400 TABLE public property_lookup postgres
3418; 0 16385 TABLE DATA public actors postgres
3426; 0 16452 TABLE DATA public attributes postgres
3266; 2606 16458 CONSTRAINT public attributes attributes_pkey postgres
3268; 1259 16459 INDEX public idx_attributes_ttl postgres
3248; 1259 16392 INDEX public ix_actors_creator postgres
3275; 2606 16407 FK CONSTRAINT public property_lookup fk_property_lookup_actor postgres
"""

DDL = """
CREATE INDEX idx_attributes_ttl ON public.attributes USING btree (ttl_timestamp);
CREATE INDEX ix_actors_creator ON public.actors USING btree (creator);
ALTER TABLE ONLY public.property_lookup
    ADD CONSTRAINT fk_property_lookup_actor FOREIGN KEY (actor_id) REFERENCES public.actors(id);
"""


def test_parse_toc_and_select_a_table_with_what_belongs_to_it():
    toc = parse_toc(LISTING)
    assert toc.pg_dump_version.startswith("15.20")
    assert [e.desc for e in toc.entries][:5] == ["TABLE", "TABLE", "ACL", "COMMENT", "TABLE"]
    assert toc.entries[3].rest == "public COLUMN attributes.ttl_timestamp postgres"
    asked: list[str] = []

    def read_ddl(entries: Any) -> str:
        asked.extend(e.desc for e in entries)
        return DDL

    selection = select_tables(toc, ["public.attributes", "public.property_lookup"], read_ddl)
    assert sorted(asked) == ["FK CONSTRAINT", "INDEX", "INDEX"]
    assert [e.dump_id for e in selection.entries] == [222, 3438, 3500, 216, 3426, 3266, 3268]
    assert selection.skipped_foreign_keys == [
        "public.property_lookup fk_property_lookup_actor (references public.actors, which "
        "is not restored)"
    ]
    both = select_tables(toc, ["public.property_lookup", "public.actors"], read_ddl)
    assert 3275 in [e.dump_id for e in both.entries]
    assert both.skipped_foreign_keys == []


def test_table_with_quoted_names_identity_and_serial_sequences(
    pg_db: PgDatabase, in_process: Any, tmp_path: Path
):
    with pg_db.connect(autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Aw Data"')
        conn.execute(
            'CREATE TABLE "Aw Data"."Odd; Table" (id serial PRIMARY KEY, '
            "n int GENERATED ALWAYS AS IDENTITY, v text NOT NULL CHECK (v <> ''))"
        )
        conn.execute('CREATE INDEX "Odd ""idx""" ON "Aw Data"."Odd; Table" (v)')
        conn.execute(
            'INSERT INTO "Aw Data"."Odd; Table" (v) SELECT g::text FROM generate_series(1, 50) g'
        )
        conn.execute("CREATE TABLE other (id int PRIMARY KEY)")
    env = backup_env(pg_db, tmp_path, "file", False, None)
    take_backup(in_process, env)
    side = f"{pg_db.name}_odd"

    code, document, stderr = restore(env, "--to-database", side, "--table", "Odd; Table")

    assert code == 0, stderr
    assert tables_of(pg_db.cluster, side) == ["Aw Data.Odd; Table"]
    assert document["tables"]["Odd; Table"] == {"schema": "Aw Data", "rows": 50, "expected": 50}
    assert indexes_of(pg_db.cluster, side, "Odd; Table") == ['Odd "idx"', "Odd; Table_pkey"]
    with pg_db.cluster.connect(side, autocommit=True) as conn:
        # Both sequences came along, set past the restored rows.
        conn.execute('INSERT INTO "Aw Data"."Odd; Table" (v) VALUES (\'next\')')
        row = conn.execute('SELECT id, n FROM "Aw Data"."Odd; Table" WHERE v = \'next\'').fetchone()
        assert row == (51, 51)


def test_restore_progress_follows_phases_and_logs_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
):
    now = [0.0]
    progress = RestoreProgress(10, interval_seconds=5.0, monotonic=lambda: now[0])
    lines = [
        "pg_restore: connecting to database for restore",
        'pg_restore: creating TABLE "public.actors"',
        "pg_restore: entering main parallel loop",
        "pg_restore: launching item 3418 TABLE DATA actors",
        'pg_restore: processing data for table "public.actors"',
        "pg_restore: finished item 3418 TABLE DATA actors",
        'pg_restore: creating CONSTRAINT "public.actors actors_pkey"',
        'pg_restore: processing data for table "public.attributes"',
        "pg_restore: pg_restore: finished item 3426 TABLE DATA attributes",
    ]
    with caplog.at_level(logging.INFO, logger="awops.restore.progress"):
        for line in lines:
            progress.feed(line)
            now[0] += 1.0
        now[0] += 10
        progress.feed('pg_restore: creating INDEX "public.idx_attributes_ttl"')
        progress.feed("pg_restore: error: could not execute query: ERROR: boom")
    assert progress.phases_seen == ["schema", "data", "indexes and constraints"]
    assert progress.done_entries == 2 and progress.tables_started == 2
    messages = [r.getMessage() for r in caplog.records]
    periodic = [m for m in messages if "entries" in m]
    assert len(periodic) == 1 and "2 of 10 entries" in periodic[0]
    assert messages[-1] == "pg_restore: error: could not execute query: ERROR: boom"


def test_request_checks_and_table_names():
    good = RestoreRequest("latest", "side")
    good.check()
    for bad, message in (
        (RestoreRequest("nope", "side"), "expected 'latest'"),
        (RestoreRequest("latest", ""), "expected a database name"),
        (RestoreRequest("latest", "x" * 64), "at most 63 bytes"),
        (RestoreRequest("latest", "template1"), "template"),
        (RestoreRequest("latest", "a", replace="b"), "must repeat"),
        (RestoreRequest("latest", "a", target="ftp://x"), "--target"),
    ):
        with pytest.raises(RestoreUsageError, match=message):
            bad.check()
    rows = {"public.attributes": 3, "aw.attributes": 1, "public.actors": 2}
    resolve = RestoreRequest("latest", "a", tables=("actors", "aw.attributes"))
    assert resolve.resolve_tables("b1", rows) == ["public.actors", "aw.attributes"]
    with pytest.raises(RestoreUsageError, match="several schemas"):
        RestoreRequest("latest", "a", tables=("attributes",)).resolve_tables("b1", rows)
    with pytest.raises(RestoreUsageError, match="holds no such table"):
        RestoreRequest("latest", "a", tables=("nope",)).resolve_tables("b1", rows)


def test_report_keys_tables_by_bare_name_unless_it_repeats():
    report = RestoreReport(database="d")
    report.counts = [
        TableCount("public.attributes", 3, 3),
        TableCount("aw.attributes", 1, 1),
        TableCount("public.actors", 2, 2),
    ]
    assert set(report.as_json()["tables"]) == {"public.attributes", "aw.attributes", "actors"}


def test_manifest_facts_are_checked_field_by_field(tmp_path: Path):
    base = {
        "backup": "db-20261205T030000.000Z",
        "database": "db",
        "server_version": "15",
        "pg_dump_version": "pg_dump (PostgreSQL) 15.2",
        "started_at": "2026-12-05T03:00:00+00:00",
        "finished_at": "2026-12-05T03:00:01+00:00",
        "dump_file": "db-20261205T030000.000Z.dump",
        "size_bytes": 1,
        "sha256": "0" * 64,
        "table_rows": {},
    }

    def facts(**fields: Any) -> Any:
        # The fields exist from the manifest format that records ActingWeb's facts on.
        version = {"format_version": ACTINGWEB_FORMAT_VERSION} if fields else {}
        raw = json.dumps({**base, **version, **fields}).encode()
        return read_facts(Manifest.from_json(raw, "m.json"), lambda: raw, "m.json")

    older = facts()
    assert older.alembic_revision is None and older.actingweb_tables is None
    assert older.globals is not None and older.globals.status == "skipped"
    assert "not recorded" in older.globals.reason
    ok = facts(
        alembic_revision="",
        actingweb_tables=["actors"],
        globals={
            "file": "db-20261205T030000.000Z.globals.sql.age",
            "size_bytes": 10,
            "sha256": "a" * 64,
            "status": "ok",
            "reason": "",
        },
    )
    assert ok.alembic_revision == "" and ok.actingweb_tables == ("actors",)
    assert ok.globals.encrypted
    skipped = facts(globals={"status": "skipped", "reason": "pg_dumpall not found"})
    assert skipped.globals.status == "skipped"
    for bad in (
        {"alembic_revision": 7},
        {"actingweb_tables": "actors"},
        {"globals": {"status": "ok", "file": "../../etc/passwd", "size_bytes": 1}},
        {"globals": {"status": "maybe"}},
    ):
        with pytest.raises(ManifestError, match=r"m\.json"):
            facts(**bad)


def test_stop_request_runs_callbacks_once_and_late_ones_at_once():
    stop = StopRequest()
    calls: list[str] = []
    unregister = stop.register(lambda: calls.append("a"))
    stop.register(lambda: calls.append("b"))
    unregister()
    stop.check()
    stop.request("SIGTERM")
    stop.request("SIGTERM")
    assert calls == ["b"]
    stop.register(lambda: calls.append("late"))
    assert calls == ["b", "late"]
    with pytest.raises(RestoreInterrupted, match="stopped by SIGTERM"):
        stop.check()


def test_too_little_free_space_is_refused_before_fetching(tmp_path: Path):
    check_free_space(tmp_path, 1024)
    with pytest.raises(RestoreError, match="MiB free"):
        check_free_space(tmp_path, 100 * 1024**3, free=lambda path: 10 * 1024**2)


class _StopAfterFirstChunk(LocalTarget):
    """A local target whose reader asks the restore to stop after the first chunk."""

    def __init__(self, directory: Path, stop: StopRequest) -> None:
        super().__init__(directory)
        self.stop = stop

    def read_chunks(self, name: str) -> Any:
        for number, chunk in enumerate(super().read_chunks(name)):
            if number == 1:
                self.stop.request("SIGTERM")
            yield chunk


def test_a_stop_mid_fetch_ends_the_fetch(tmp_path: Path):
    directory = tmp_path / "t"
    directory.mkdir()
    (directory / "big.dump").write_bytes(b"x" * (3 * 1024 * 1024))
    staging = tmp_path / "staging"
    staging.mkdir()
    stop = StopRequest()
    fetcher = Fetcher(_StopAfterFirstChunk(directory, stop), staging, stop, lambda: [])
    with pytest.raises(RestoreInterrupted):
        fetcher.fetch(StoredObject("big.dump", 3 * 1024 * 1024, "0" * 64, False), "dump")


class _Remote(LocalTarget):
    """A local target that passes for a remote one: its objects are always staged."""

    def local_path(self, name: str) -> Path | None:
        return None


@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_staged_and_fetched_copies_are_private_whatever_the_umask(tmp_path: Path, umask: int):
    directory = tmp_path / "t"
    directory.mkdir()
    data = b"dump bytes " * 1000
    (directory / "db.dump").write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    staging = tmp_path / "staging"
    staging.mkdir()
    stop = StopRequest()
    previous = os.umask(umask)
    try:
        fetched = Fetcher(_Remote(directory), staging, stop, lambda: []).fetch(
            StoredObject("db.dump", len(data), sha256, False), "dump"
        )
        copy = tmp_path / "copy.dump"
        fetch_object(_Remote(directory), "db.dump", len(data), sha256, None, copy)
    finally:
        os.umask(previous)
    assert fetched.staged
    assert stat.S_IMODE(fetched.path.stat().st_mode) == 0o600
    assert fetched.path.read_bytes() == data
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert copy.read_bytes() == data


def test_no_room_in_the_work_directory_touches_nothing(
    aw_db: PgDatabase, in_process: Any, tmp_path: Path, moto: Any
):
    fill(aw_db)
    env = backup_env(aw_db, tmp_path, "s3", False, moto)
    take_backup(in_process, env)
    runner = in_process(env)
    config = load_config(None, builtin_registry(), clean_environ(env))
    from awops.backup.targets import open_target

    stop = StopRequest()
    setup = setup_from_config(
        config,
        lambda: [open_target(config.backup.targets[0], runner.resources.aws, config.backup)],
        stop,
    )
    setup.free_bytes = lambda path: 1024
    name = f"{aw_db.name}_full"
    work = tmp_path / "work"
    work.mkdir()

    report = PostgresRestore(RestoreRequest("latest", name, work_dir=str(work)), setup, stop).run()

    assert report.ok is False
    assert "MiB free" in report.error and str(work) in report.error
    assert report.fetch_seconds == 0
    assert not database_exists(aw_db.cluster, name)
    assert list(work.iterdir()) == []


def test_chunks_hashed_ahead_give_the_same_digest_and_stream_on_after_a_partial_read():
    from awops.backup.fetch import HashedChunks

    pieces = [os.urandom(1000 + n) for n in range(6)]
    plain = HashedChunks(iter(pieces))
    ahead = HashedChunks(iter(pieces), read_ahead=2)
    assert list(plain) == pieces
    first = iter(ahead)
    assert [next(first), next(first)] == pieces[:2]
    ahead.drain()  # goes on from the third chunk, as a decryption failure's drain does
    assert (ahead.size_bytes, ahead.hexdigest()) == (plain.size_bytes, plain.hexdigest())
    assert ahead.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()
    ahead.close()


def test_a_stop_while_hashing_ahead_reaches_the_reader_and_close_ends_the_source():
    from awops.backup.fetch import HashedChunks

    stop = StopRequest()
    closed: list[bool] = []

    def endless() -> Any:
        try:
            while True:
                yield b"x" * 4096
        finally:
            closed.append(True)

    source = endless()
    chunks = HashedChunks(source, stop.check, read_ahead=2)
    reader = iter(chunks)
    assert next(reader) == b"x" * 4096
    stop.request("SIGTERM")
    with pytest.raises(RestoreInterrupted, match="SIGTERM"):
        for _ in reader:
            pass
    chunks.close()
    assert closed == [True]


def test_prefetched_chunks_arrive_in_order_and_failures_reach_the_reader():
    from awops.backup.fetch import Prefetched

    chunks = Prefetched(iter([b"a", b"b", b"c"]), depth=1)
    assert list(chunks) == [b"a", b"b", b"c"]
    assert list(chunks) == []  # the end, again
    chunks.close()

    closed: list[bool] = []

    def failing() -> Any:
        try:
            yield b"first"
            raise OSError("connection reset")
        finally:
            closed.append(True)

    chunks = Prefetched(failing(), depth=1)
    assert next(chunks) == b"first"
    with pytest.raises(OSError, match="connection reset"):
        next(chunks)
    with pytest.raises(OSError, match="connection reset"):
        next(chunks)
    chunks.close()
    assert closed == [True]

    endless = Prefetched(iter(lambda: b"x", None), depth=2)
    assert next(endless) == b"x"
    endless.close()  # stops the reading thread although the source never ends


def test_row_counter_counts_a_table_once_pg_restore_is_done_with_it(pg_db: PgDatabase):
    from awops.restore.counting import RowCounter

    with pg_db.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE t1 (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t1 SELECT generate_series(1, 7)")
        conn.execute('CREATE TABLE "t1 b" (id int)')
    toc = parse_toc(
        "10; 0 1 TABLE DATA public t1 postgres\n"
        "11; 2606 2 CONSTRAINT public t1 t1_pkey postgres\n"
        "12; 1259 3 INDEX public t1_idx postgres\n"
        "20; 0 4 TABLE DATA public t1 b postgres\n"
    )
    counter = RowCounter(toc.entries, ["public.t1", "public.t1 b"])
    with pg_db.connect(autocommit=True) as session:
        counter.start([session])
        counter.finished(10)
        counter.finished(20)  # "t1 b": its data, and nothing else of its own
        counter.finished(99)  # not a table's
        counter.finished(11)  # t1's constraint: now t1 is done too
        counts = counter.result([session])
    assert counts == {"public.t1": 7, "public.t1 b": 0}
    assert counter.counted_early == 2


def test_manifest_facts_from_a_manifest_that_carries_them_with_defaults():
    """A Manifest with the fields as attributes (defaults for a backup that did not record
    them) and records_actingweb telling the two apart."""
    import dataclasses

    @dataclasses.dataclass
    class Roles:
        file: str = ""
        size_bytes: int = 0
        sha256: str = ""
        status: str = "skipped"
        reason: str = "not recorded"

    class Carrying:
        backup = "db-20261205T030000.000Z"

        def __init__(self, recorded: bool) -> None:
            self.records_actingweb = recorded
            self.alembic_revision = ""
            self.actingweb_tables = ["public.actors"] if recorded else []
            self.globals = Roles()

    def unread() -> bytes:
        raise AssertionError("the JSON is not read again when the Manifest carries the fields")

    old = read_facts(Carrying(False), unread, "m.json")  # type: ignore[arg-type]
    assert old.alembic_revision is None and old.actingweb_tables is None
    assert old.globals is not None and old.globals.reason == "not recorded"
    new = read_facts(Carrying(True), unread, "m.json")  # type: ignore[arg-type]
    assert new.alembic_revision == "" and new.actingweb_tables == ("public.actors",)

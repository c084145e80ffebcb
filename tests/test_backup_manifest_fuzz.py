"""Property-based fuzzing of manifest reading: any bytes, any JSON, any field of any type.

Whatever a target hands back as a manifest, reading it gives a manifest whose every field has
its declared type, or a :class:`ManifestError` that names the file and, for a bad value, the
field; never another exception. On a real directory target, the catalogue lists such a
backup as unreadable and never raises.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from awops.backup.catalog import read_catalog
from awops.backup.manifest import (
    ENCRYPTION_METHODS,
    GLOBALS_STATUSES,
    Encryption,
    Globals,
    Manifest,
    ManifestError,
)
from awops.backup.names import backup_id, dump_name, manifest_name
from awops.backup.targets import open_target

DATABASE = "actingweb"
BACKUP = backup_id(DATABASE, 1796439600.0)
WHERE = f"file:///var/backups/awops/{manifest_name(BACKUP)}"
VALID: dict[str, Any] = json.loads(
    Manifest(
        backup=BACKUP,
        database=DATABASE,
        server_version="15.10",
        pg_dump_version="pg_dump (PostgreSQL) 15.10",
        started_at="2026-12-05T03:00:00.000+00:00",
        finished_at="2026-12-05T03:00:07.000+00:00",
        dump_file=dump_name(BACKUP, encrypted=False),
        size_bytes=80123,
        sha256="ab" * 32,
        table_rows={"public.actors": 300, "public.attributes": 500},
        snapshot="00000003-00000002-1",
        snapshot_time="2026-12-05T03:00:00.000+00:00",
        alembic_revision="b2f1c3d4e5a6",
        actingweb_tables=["public.actors", "public.attributes"],
        actingweb_schema="public",
        globals=Globals(
            file=f"{BACKUP}.globals.sql", size_bytes=526, sha256="cd" * 32, status="ok"
        ),
    ).to_json()
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["1", "300", "2026-12-05T03:00:00Z", "2026-12-05T03:00:00", "age", "x/y"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def read(data: bytes) -> Manifest | None:
    """The manifest, checked for types; None when it was refused with a proper message."""
    try:
        manifest = Manifest.from_json(data, WHERE)
    except ManifestError as exc:
        assert WHERE in str(exc)
        return None
    assert_well_typed(manifest)
    return manifest


def assert_well_typed(manifest: Manifest) -> None:
    for name in ("backup", "database", "server_version", "pg_dump_version", "dump_file"):
        assert isinstance(getattr(manifest, name), str), name
    for name in ("started_at", "finished_at", "snapshot", "snapshot_time", "format"):
        assert isinstance(getattr(manifest, name), str), name
    assert type(manifest.size_bytes) is int and manifest.size_bytes >= 0
    assert isinstance(manifest.sha256, str) and len(manifest.sha256) == 64
    assert isinstance(manifest.table_rows, dict)
    assert all(type(rows) is int and rows >= 0 for rows in manifest.table_rows.values())
    assert isinstance(manifest.encryption, Encryption)
    assert manifest.encryption.method in ENCRYPTION_METHODS
    assert all(isinstance(r, str) for r in manifest.encryption.recipients)
    assert type(manifest.format_version) is int
    assert isinstance(manifest.created, float)
    assert manifest.dated_by in ("snapshot_time", "started_at")
    assert isinstance(manifest.alembic_revision, str)
    assert isinstance(manifest.actingweb_schema, str)
    for strings in (manifest.actingweb_tables, manifest.problems):
        assert isinstance(strings, list) and all(isinstance(s, str) for s in strings)
    roles = manifest.globals
    assert isinstance(roles, Globals) and roles.status in GLOBALS_STATUSES
    assert type(roles.size_bytes) is int and roles.size_bytes >= 0
    assert isinstance(roles.reason, str)
    if roles.saved:
        assert roles.file and "/" not in roles.file and len(roles.sha256) == 64
    else:
        assert (roles.file, roles.sha256, roles.size_bytes) == ("", "", 0)


def test_the_valid_manifest_reads_back():
    manifest = read(json.dumps(VALID).encode())
    assert manifest is not None
    assert manifest.table_rows == VALID["table_rows"]
    assert manifest.dated_by == "snapshot_time"


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes(data: bytes):
    read(data)


@FUZZ
@given(json_values)
def test_any_json_document(document: Any):
    read(json.dumps(document).encode())


@FUZZ
@given(st.sampled_from(sorted(VALID)), json_values)
def test_any_value_in_any_field(field: str, value: Any):
    document = {**VALID, field: value}
    try:
        manifest = Manifest.from_json(json.dumps(document).encode(), WHERE)
    except ManifestError as exc:
        assert WHERE in str(exc)
        assert repr(field) in str(exc), str(exc)
        return
    assert_well_typed(manifest)


@FUZZ
@given(st.sets(st.sampled_from(sorted(VALID)), min_size=1))
def test_missing_fields(missing: set[str]):
    document = {key: value for key, value in VALID.items() if key not in missing}
    manifest = read(json.dumps(document).encode())
    optional = {"snapshot", "snapshot_time", "encryption", "format", "format_version"}
    optional |= {"alembic_revision", "actingweb_tables", "actingweb_schema", "globals", "problems"}
    assert (manifest is None) == bool(missing - optional)


@pytest.mark.parametrize(
    "data",
    [b"[" * 100_000, b'{"a":' * 100_000, b"\xff\xfe\x00", b"", b"NaN", b'"hello"', b"null"],
)
def test_pathological_documents(data: bytes):
    assert read(data) is None


@FUZZ
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_the_catalogue_of_a_real_directory_never_raises(manifest_bytes: bytes):
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / dump_name(BACKUP, encrypted=False)).write_bytes(b"PGDMP")
        (Path(directory) / manifest_name(BACKUP)).write_bytes(manifest_bytes)
        catalog = read_catalog(open_target(directory, None), DATABASE, 1796439600.0)
    assert len(catalog.good) + len(catalog.future) + len(catalog.unreadable) == 1
    if catalog.unreadable:
        assert manifest_name(BACKUP) in catalog.unreadable[0]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"])
def test_times_that_cannot_be_printed_in_utc_are_refused(moment: str):
    with pytest.raises(ManifestError, match="'snapshot_time'"):
        Manifest.from_json(json.dumps({**VALID, "snapshot_time": moment}).encode(), WHERE)

"""Verify records and pin markers read back without being trusted; names of a backup's objects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awops.backup.names import (
    backup_id,
    backup_of_object,
    globals_name,
    pin_name,
    verify_record_name,
)
from awops.backup.records import PinMarker, RecordError, TableCheck, VerifyRecord, iso_z

WHERE = "file:///var/backups/awops/x.verify.json"


def test_names_of_a_backups_objects():
    backup = backup_id("actingweb", 1796439600.0)
    assert backup == "actingweb-20261205T030000.000Z"
    assert globals_name(backup, encrypted=False) == f"{backup}.globals.sql"
    assert globals_name(backup, encrypted=True) == f"{backup}.globals.sql.age"
    assert verify_record_name(backup) == f"{backup}.verify.json"
    assert pin_name(backup) == f"{backup}.pin"
    for suffix in (".dump", ".dump.age", ".manifest.json", ".globals.sql", ".verify.json", ".pin"):
        assert backup_of_object(backup + suffix) == backup
    assert backup_of_object("actingweb-2026.pin") is None
    assert backup_of_object(f"{backup}.dump.partial") is None


def test_records_round_trip():
    record = VerifyRecord(
        at=iso_z(1796439600.0),
        ok=False,
        problems=["public.actors: manifest 301 rows, restored 300"],
        tables={"public.actors": TableCheck(300, 301), "public.extra": TableCheck(4, None)},
        restore_seconds=1.25,
    )
    assert record.at == "2026-12-05T03:00:00.000Z"
    again = VerifyRecord.from_json(record.to_json(), WHERE)
    assert again == record
    assert again.at_timestamp == 1796439600.0
    pin = PinMarker(iso_z(1796439600.0), "legal hold")
    assert PinMarker.from_json(pin.to_json(), WHERE) == pin
    assert json.loads(PinMarker(pin.pinned_at).to_json()) == {"pinned_at": pin.pinned_at}


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b'{"ok": true}',
        b'{"at": "2026-12-05T03:00:00", "ok": true}',
        b'{"at": "2026-12-05T03:00:00Z", "ok": "yes"}',
        b'{"at": "2026-12-05T03:00:00Z", "ok": true, "problems": "none"}',
        b'{"at": "2026-12-05T03:00:00Z", "ok": true, "tables": {"t": {"rows": -1}}}',
        b'{"at": "2026-12-05T03:00:00Z", "ok": true, "tables": {"t": 3}}',
        b'{"at": "2026-12-05T03:00:00Z", "ok": true, "restore_seconds": "1"}',
    ],
)
def test_bad_verify_records_are_refused_naming_the_object(document: bytes):
    with pytest.raises(RecordError, match=r"x\.verify\.json"):
        VerifyRecord.from_json(document, WHERE)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=8,
    )
)
def test_any_json_is_a_record_or_a_record_error(document: Any):
    data = json.dumps(document).encode()
    for reader in (VerifyRecord.from_json, PinMarker.from_json):
        try:
            reader(data, WHERE)
        except RecordError as exc:
            assert WHERE in str(exc)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"])
def test_times_that_cannot_be_printed_are_refused(moment: str):
    with pytest.raises(RecordError, match="'at'"):
        VerifyRecord.from_json(json.dumps({"at": moment, "ok": True}).encode(), WHERE)
    with pytest.raises(RecordError, match="'pinned_at'"):
        PinMarker.from_json(json.dumps({"pinned_at": moment}).encode(), WHERE)

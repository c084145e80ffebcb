"""The pure parts of a DynamoDB restore: choosing the one instant, reading --time, comparing
settings. The restore itself is tested against moto in test_dynamodb_restore.py."""

from __future__ import annotations

import pytest

from awops.config import DynamoDBSettings
from awops.dynamodb_restore.autoscaling import ScalingSetup
from awops.dynamodb_restore.compare import compare_settings
from awops.dynamodb_restore.errors import RestoreRefused, RestoreUsageError
from awops.dynamodb_restore.plan import choose_instant, parse_request, parse_time
from awops.dynamodb_restore.snapshot import Index, Pitr, Stream, TableSettings, Ttl

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_the_default_instant_is_the_latest_every_table_reaches() -> None:
    windows = {
        "a": (NOW - 86400, NOW - 300.25),
        "b": (NOW - 3600, NOW - 310.5),
        "c": (NOW - 7200, NOW - 299.0),
    }
    assert choose_instant(windows, None) == NOW - 310.5


def test_the_instant_is_cut_to_milliseconds_as_aws_keeps_them() -> None:
    assert choose_instant({"a": (NOW - 60, NOW + 0.123456)}, None) == NOW + 0.123
    assert choose_instant({"a": (NOW - 60, NOW)}, NOW - 1.0009) == NOW - 1.001


def test_no_common_instant_is_refused_naming_both_ends() -> None:
    windows = {"early": (NOW - 7200, NOW - 3600), "late": (NOW - 60, NOW)}
    with pytest.raises(RestoreRefused) as refused:
        choose_instant(windows, None)
    (reason,) = refused.value.reasons
    assert reason.startswith("no instant every table can reach: early can be restored up to")
    assert "late only from" in reason


def test_a_wanted_time_must_lie_in_every_window() -> None:
    windows = {"a": (NOW - 7200, NOW), "b": (NOW - 600, NOW)}
    assert choose_instant(windows, NOW - 300) == NOW - 300
    with pytest.raises(RestoreRefused) as refused:
        choose_instant(windows, NOW - 3600)
    assert len(refused.value.reasons) == 1 and refused.value.reasons[0].startswith("b can be")
    with pytest.raises(RestoreRefused):
        choose_instant(windows, NOW + 1)


def test_parse_time_needs_a_zone_and_the_past() -> None:
    assert parse_time("2027-01-15T09:00:00+01:00", NOW) == NOW
    assert parse_time("2027-01-15T08:00:00Z", NOW) == NOW
    for text, message in {
        "2027-01-15T08:00:00": "give the zone",
        "15/01/2027": "expected an ISO 8601 time",
        "2027-01-15T08:05:00Z": "is in the future",
    }.items():
        with pytest.raises(RestoreUsageError, match=message):
            parse_time(text, NOW)


def test_parse_request_picks_the_tables_and_checks_the_prefix() -> None:
    settings = DynamoDBSettings(prefix="app")
    request = parse_request(settings, "app2", None, [], ["trusts", "actors", "trusts"], NOW)
    assert [t.name for t in request.tables] == ["app_trusts", "app_actors"]
    assert request.target_name(request.tables[0]) == "app2_trusts"
    assert len(parse_request(settings, "app2", None, [], [], NOW).tables) == 9
    assert request.warnings == []
    (warning,) = parse_request(settings, "app_r1", None, [], [], NOW).warnings
    assert "dynamodb-gsi of the source deployment will report them" in warning
    legacy = DynamoDBSettings(prefix="app", use_property_lookup_table=False)
    assert len(parse_request(legacy, "app2", None, [], [], NOW).tables) == 8
    with pytest.raises(RestoreUsageError, match="--table and --backup exclude each other"):
        parse_request(settings, "app2", None, ["arn:x"], ["actors"], NOW)
    long_suffixes = DynamoDBSettings(prefix="app", expected_tables=["s" * 100])
    with pytest.raises(RestoreUsageError, match="table names would pass 255"):
        parse_request(long_suffixes, "p" * 200, None, [], [], NOW)


def settings(name: str, **changes: object) -> TableSettings:
    base = TableSettings(
        name=name,
        arn=f"arn:aws:dynamodb:us-west-1:123456789012:table/{name}",
        status="ACTIVE",
        key_schema=("id", "peerid"),
        billing_mode="PAY_PER_REQUEST",
        throughput=None,
        gsis={"secret-index": Index(("secret", None), "ALL", None)},
        stream=Stream(False),
        deletion_protection=False,
        ttl=Ttl(True, "ttl_timestamp"),
        pitr=Pitr(True, 35),
        tags={"team": "core"},
        autoscaling=ScalingSetup(),
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_compare_matches_equal_settings_and_names_each_difference() -> None:
    rows = compare_settings(settings("src"), settings("dst"))
    assert [row.setting for row in rows] == [
        "key schema", "gsis", "gsi secret-index", "billing mode", "ttl", "pitr", "tags",
        "stream", "deletion protection", "autoscaling",
    ]  # fmt: skip
    assert all(row.match for row in rows)
    restored = settings(
        "dst",
        gsis={},
        ttl=Ttl(False),
        pitr=Pitr(True, 7),
        tags={},
        stream=Stream(True, "KEYS_ONLY"),
    )
    differing = {row.setting: row for row in compare_settings(settings("src"), restored)}
    assert {name for name, row in differing.items() if not row.match} == {
        "gsis", "gsi secret-index", "ttl", "pitr", "tags", "stream",
    }  # fmt: skip
    assert differing["gsi secret-index"].restored == "missing"
    assert differing["ttl"].source == "enabled on ttl_timestamp"
    assert differing["pitr"].restored == "enabled, 7 days"


def test_an_unknown_source_setting_never_matches() -> None:
    source = settings("src", tags=None, deletion_protection=None, autoscaling=None)
    rows = {row.setting: row for row in compare_settings(source, settings("dst"))}
    for name in ("tags", "deletion protection", "autoscaling"):
        assert rows[name].source == "unknown" and rows[name].match is False


def test_pitr_without_a_stated_period_matches_any_period() -> None:
    rows = {r.setting: r for r in compare_settings(settings("s", pitr=Pitr(True)), settings("d"))}
    assert rows["pitr"].match is True
    off = {r.setting: r for r in compare_settings(settings("s"), settings("d", pitr=Pitr(False)))}
    assert off["pitr"].match is False

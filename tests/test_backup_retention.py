"""Retention over generated backup histories: what it keeps, and that the newest always stays."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from awops.backup.retention import DAY_SECONDS, RetentionPolicy, backups_to_delete, kept_by

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC).timestamp()

histories = st.lists(
    st.floats(min_value=NOW - 800 * DAY_SECONDS, max_value=NOW, allow_nan=False),
    max_size=60,
    unique=True,
).map(lambda stamps: [(f"b{i:03d}", ts) for i, ts in enumerate(stamps)])

policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 10),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 6),
    max_age_days=st.sampled_from([0.0, 0.5, 1.0, 7.0, 30.0, 400.0]),
)


@settings(max_examples=300, deadline=None)
@given(histories, policies)
def test_newest_backup_is_never_deleted(history, policy):
    deleted = backups_to_delete(history, policy, NOW)
    assert set(deleted) <= {name for name, _ in history}
    assert len(deleted) == len(set(deleted))
    if history:
        newest = max(history, key=lambda b: (b[1], b[0]))[0]
        assert newest not in deleted
        assert len(deleted) < len(history)


@settings(max_examples=200, deadline=None)
@given(histories, policies)
def test_keep_rules_and_max_age_hold(history, policy):
    deleted = set(backups_to_delete(history, policy, NOW))
    kept = [(name, ts) for name, ts in history if name not in deleted]
    newest_first = sorted(history, key=lambda b: (b[1], b[0]), reverse=True)
    if policy.max_age_days > 0:
        too_old = NOW - policy.max_age_days * DAY_SECONDS
        assert all(ts >= too_old for name, ts in kept if name != newest_first[0][0])
    else:
        # Without a maximum age, the keep_last newest always survive.
        assert not deleted & {name for name, _ in newest_first[: policy.keep_last]}
        # ... and so does the newest backup of each of the keep_daily newest days.
        days: dict[str, str] = {}
        for name, ts in newest_first:
            days.setdefault(datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d"), name)
        assert not deleted & set(list(days.values())[: policy.keep_daily])
    if not policy.enabled:
        assert deleted == set()


@given(histories)
def test_only_max_age_deletes_exactly_the_old_ones(history):
    policy = RetentionPolicy(max_age_days=30)
    deleted = set(backups_to_delete(history, policy, NOW))
    if not history:
        return
    newest = max(history, key=lambda b: (b[1], b[0]))[0]
    expected = {n for n, ts in history if ts < NOW - 30 * DAY_SECONDS and n != newest}
    assert deleted == expected


def test_daily_weekly_monthly_buckets():
    # One backup every 6 hours for 90 days; NOW is Tuesday 2026-12-01 03:00 UTC.
    history = [(f"b{i:04d}", NOW - i * 6 * 3600) for i in range(360)]
    policy = RetentionPolicy(keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=3)
    deleted = backups_to_delete(history, policy, NOW)
    kept = set(dict(history)) - set(deleted)
    # last 2: Dec 1 03:00, Nov 30 21:00; days: + Nov 29 21:00 (b0005); weeks: b0000, b0005
    # (Sunday Nov 29 ends the previous ISO week); months: Dec, Nov, Oct 31 21:00 (b0121).
    assert kept == {"b0000", "b0001", "b0005", "b0121"}
    assert deleted == sorted(deleted, key=lambda name: -int(name[1:]))  # oldest first


@settings(max_examples=200, deadline=None)
@given(histories, policies, st.data())
def test_pinned_backups_are_never_deleted_and_kept_by_says_why(history, policy, data):
    pinned = set(data.draw(st.lists(st.sampled_from([n for n, _ in history] or ["none"]))))
    deleted = set(backups_to_delete(history, policy, NOW, pinned=pinned))
    assert not deleted & pinned
    reasons = kept_by(history, policy, NOW, pinned)
    assert set(reasons) == {name for name, _ in history}
    if policy.enabled:
        assert deleted == {name for name, why in reasons.items() if not why}
    for name in pinned & set(reasons):
        assert "pinned" in reasons[name]
    allowed = {"last", "daily", "weekly", "monthly", "pinned", "newest", "unlimited"}
    assert all(set(why) <= allowed and len(why) == len(set(why)) for why in reasons.values())


def test_kept_by_names_each_rule():
    history = [(f"b{i:04d}", NOW - i * 6 * 3600) for i in range(360)]
    policy = RetentionPolicy(keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=3)
    reasons = kept_by(history, policy, NOW, pinned={"b0300"})
    assert reasons["b0000"] == ["last", "daily", "weekly", "monthly"]
    assert reasons["b0001"] == ["last", "daily", "monthly"]  # the newest of November
    assert reasons["b0005"] == ["daily", "weekly"]
    assert reasons["b0121"] == ["monthly"]
    assert reasons["b0300"] == ["pinned"]
    assert reasons["b0002"] == []
    only_age = kept_by(history, RetentionPolicy(max_age_days=1), NOW)
    assert only_age["b0000"] == ["unlimited"] and only_age["b0010"] == []
    nothing_young = kept_by(history[5:], RetentionPolicy(max_age_days=0.1), NOW)
    assert nothing_young["b0005"] == ["newest"]

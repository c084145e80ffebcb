"""Which backups to delete: keep-last, daily/weekly/monthly buckets and a maximum age.

A backup survives if any keep rule selects it; ``max_age_days`` then removes what is older
than that, kept or not. The newest backup, a pinned one, and any the caller names (the one
the run applying retention has just written), are never deleted, whatever the rules say.
Days, weeks (ISO) and months are UTC. Times are the database server's (see
:mod:`awops.backup.catalog`).

:func:`kept_by` says which rules keep each backup, as ``awops backups list`` shows them:
``last``, ``daily``, ``weekly``, ``monthly``, ``pinned``; ``unlimited`` when the policy has no
keep rule (only ``max_age_days``, or nothing) and the backup is young enough; ``newest`` when
nothing else keeps the newest backup. An empty list: the next retention deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from awops.backup.options import PgBackupOptions

DAY_SECONDS = 86400.0


@dataclass
class RetentionPolicy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    max_age_days: float = 0.0

    @classmethod
    def of(cls, options: PgBackupOptions) -> RetentionPolicy:
        """The retention keys of ``[jobs.pg-backup]``."""
        return cls(
            keep_last=options.keep_last,
            keep_daily=options.keep_daily,
            keep_weekly=options.keep_weekly,
            keep_monthly=options.keep_monthly,
            max_age_days=options.max_age_days,
        )

    @property
    def has_keep_rule(self) -> bool:
        return any((self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly))

    @property
    def enabled(self) -> bool:
        return self.has_keep_rule or self.max_age_days > 0


def _day(moment: datetime) -> tuple[int, ...]:
    return (moment.year, moment.month, moment.day)


def _week(moment: datetime) -> tuple[int, ...]:
    year, week, _ = moment.isocalendar()
    return (year, week)


def _month(moment: datetime) -> tuple[int, ...]:
    return (moment.year, moment.month)


def _newest_per_period(
    newest_first: Sequence[tuple[str, datetime]],
    period: Callable[[datetime], tuple[int, ...]],
    count: int,
) -> set[str]:
    kept: set[str] = set()
    seen: set[tuple[int, ...]] = set()
    for name, moment in newest_first:
        if len(seen) >= count:
            break
        key = period(moment)
        if key not in seen:
            seen.add(key)
            kept.add(name)
    return kept


def kept_by(
    backups: Sequence[tuple[str, float]],
    policy: RetentionPolicy,
    now: float,
    pinned: Collection[str] = (),
) -> dict[str, list[str]]:
    """For each ``(name, creation timestamp)`` backup, the rules that keep it (see the
    module's docstring); ``[]`` for a backup the policy deletes."""
    if not backups:
        return {}
    ordered = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)
    newest_first = [(name, datetime.fromtimestamp(ts, UTC)) for name, ts in ordered]
    reasons: dict[str, list[str]] = {name: [] for name, _ in ordered}
    if policy.has_keep_rule:
        rules = [
            ("last", {name for name, _ in newest_first[: policy.keep_last]}),
            ("daily", _newest_per_period(newest_first, _day, policy.keep_daily)),
            ("weekly", _newest_per_period(newest_first, _week, policy.keep_weekly)),
            ("monthly", _newest_per_period(newest_first, _month, policy.keep_monthly)),
        ]
        for rule, kept in rules:
            for name in kept:
                reasons[name].append(rule)
    else:
        for name in reasons:
            reasons[name].append("unlimited")
    if policy.max_age_days > 0:
        oldest_allowed = now - policy.max_age_days * DAY_SECONDS
        for name, ts in ordered:
            if ts < oldest_allowed:
                reasons[name].clear()
    if not reasons[ordered[0][0]]:
        reasons[ordered[0][0]].append("newest")
    for name in pinned:
        if name in reasons:
            reasons[name].append("pinned")
    return reasons


def backups_to_delete(
    backups: Sequence[tuple[str, float]],
    policy: RetentionPolicy,
    now: float,
    keep: Collection[str] = (),
    pinned: Collection[str] = (),
) -> list[str]:
    """Names of ``(name, creation timestamp)`` backups that ``policy`` deletes, oldest first.

    ``backups`` are complete, good backups only; the newest of them, the ``pinned`` ones and
    those in ``keep`` always stay.
    """
    if not backups or not policy.enabled:
        return []
    reasons = kept_by(backups, policy, now, pinned)
    ordered = sorted(backups, key=lambda b: (b[1], b[0]))
    return [name for name, _ in ordered if not reasons[name] and name not in keep]

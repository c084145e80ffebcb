"""APScheduler triggers for :class:`awops.schedule.Schedule`; only the daemon and ``awops jobs``
import this module, since APScheduler is not needed to run a job once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from awops.schedule import Schedule, cron_gaps, weekday_names

UTC = dt.UTC


def build_trigger(schedule: Schedule, jitter_seconds: float = 0.0) -> Any:
    jitter = int(jitter_seconds) if jitter_seconds >= 1 else None
    if schedule.interval_seconds is not None:
        # Aligned to the Unix epoch, so every replica fires for the same slots (awops.locks).
        return IntervalTrigger(
            seconds=schedule.interval_seconds,
            start_date=dt.datetime.fromtimestamp(0, UTC),
            jitter=jitter,
            timezone=UTC,
        )
    assert schedule.cron is not None
    minute, hour, day, month, day_of_week = schedule.cron
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=weekday_names(day_of_week) if day_of_week != "*" else "*",
        jitter=jitter,
        timezone=UTC,
    )


def _gaps(schedule: Schedule) -> tuple[float, float]:
    """(shortest, longest) time between two runs; for cron, over its whole calendar."""
    if schedule.interval_seconds is not None:
        return schedule.interval_seconds, schedule.interval_seconds
    assert schedule.cron is not None
    gaps = cron_gaps(schedule.cron)
    assert gaps is not None  # parse_schedule refuses a schedule that never runs
    return gaps


def period_seconds(schedule: Schedule) -> float:
    """The longest time between two runs: what "no success in twice its period" must allow
    (a weekdays-only cron job waits over the weekend)."""
    return _gaps(schedule)[1]


def misfire_grace_seconds(schedule: Schedule) -> int:
    """Half the shortest time between two runs, at least a second and at most an hour: a run
    late by more is skipped (and coalesced into the next), one late by less still happens."""
    return int(min(max(_gaps(schedule)[0] / 2, 1), 3600))


def next_run(schedule: Schedule, now: dt.datetime | None = None) -> dt.datetime | None:
    now = now or dt.datetime.now(UTC)
    trigger = build_trigger(schedule)
    if isinstance(trigger, IntervalTrigger):
        return now + dt.timedelta(seconds=schedule.interval_seconds or 0)
    result: dt.datetime | None = trigger.get_next_fire_time(None, now)
    return result

import datetime as dt
import itertools

import pytest

from awops.schedule import ScheduleError, expand_field, parse_schedule, weekday_names
from awops.triggers import build_trigger, misfire_grace_seconds, next_run, period_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("every 10m", 600), ("60s", 60), ("1h30m", 5400), ("every 1d", 86400), ("0.5s", 0.5)],
)
def test_intervals(text: str, seconds: float) -> None:
    assert parse_schedule(text).interval_seconds == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "every",
        "0 3 * *",
        "61 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "every 0s",
        "@sometimes",
        "x * * * *",
        "0 0 31 2 *",  # never runs
        "0 0 30 2 1",
    ],
)
def test_bad_schedules_are_rejected(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


def test_cron_names_and_aliases() -> None:
    assert parse_schedule("0 3 * jan mon").cron == ("0", "3", "*", "1", "1")
    assert parse_schedule("@daily").cron == ("0", "0", "*", "*", "*")


def test_cron_sunday_is_sunday_for_apscheduler() -> None:
    # APScheduler 3 counts weekdays from Monday; cron's 0 and 7 are Sunday.
    assert weekday_names("0") == "sun"
    assert weekday_names("7") == "sun"
    assert weekday_names("1-5") == "mon,tue,wed,thu,fri"
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)  # a Tuesday
    upcoming = next_run(parse_schedule("0 5 * * 0"), now)
    assert upcoming is not None and upcoming.weekday() == 6  # Sunday
    assert upcoming == dt.datetime(2026, 12, 6, 5, 0, tzinfo=dt.UTC)


def test_expand_field_steps() -> None:
    assert expand_field("*/15", 0, 59) == [0, 15, 30, 45]
    assert expand_field("10-20/5,1", 0, 59) == [1, 10, 15, 20]


def test_misfire_grace_fits_schedule() -> None:
    assert misfire_grace_seconds(parse_schedule("every 1s")) == 1
    assert misfire_grace_seconds(parse_schedule("every 10m")) == 300
    assert misfire_grace_seconds(parse_schedule("0 3 * * *")) == 3600


def _gaps_by_apscheduler(text: str, days: int) -> list[float]:
    """Every gap between consecutive runs of the trigger the daemon uses, over ``days``."""
    trigger = build_trigger(parse_schedule(text))
    moment = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)  # a Monday
    end = moment + dt.timedelta(days=days)
    fires = []
    previous = None
    while (moment := trigger.get_next_fire_time(previous, moment)) and moment < end:
        fires.append(moment)
        previous, moment = moment, moment + dt.timedelta(seconds=1)
    return [(b - a).total_seconds() for a, b in itertools.pairwise(fires)]


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("0 3 * * *", 10),
        ("0 3 * * 1-5", 21),  # weekdays: the weekend gap is the longest
        ("*/20 9-17 * * 1-5", 21),
        ("30 4 1,15 * *", 120),
        ("0 0 * * 0", 30),
        ("@hourly", 3),
    ],
)
def test_cron_period_is_the_longest_gap_the_daemon_will_see(text: str, days: int) -> None:
    gaps = _gaps_by_apscheduler(text, days)
    assert period_seconds(parse_schedule(text)) == max(gaps)
    assert misfire_grace_seconds(parse_schedule(text)) == int(min(max(min(gaps) / 2, 1), 3600))


def test_cron_period_of_rare_and_impossible_days() -> None:
    # 29 February: four years apart, and the date exists.
    assert period_seconds(parse_schedule("0 0 29 2 *")) == 4 * 365 * 86400 + 86400
    assert period_seconds(parse_schedule("0 3 * * 1-5")) == 3 * 86400
    # Both day of month and weekday must match, as in APScheduler: Monday 29 February.
    assert period_seconds(parse_schedule("0 0 29 2 1")) > 4 * 365 * 86400

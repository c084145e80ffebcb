"""Schedules: an interval (``every 10m``, ``60s``) or a five-field cron expression.

Parsing and validation live here without APScheduler, so ``awops run-once`` and
``awops config --check`` reject a bad schedule without paying for the scheduler's import.
:func:`schedule_slot` names the fire time a run belongs to, the same on every replica.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from dataclasses import dataclass

from awops.settings import MAX_DURATION_SECONDS

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^(?:every\s+)?((?:\d+(?:\.\d+)?\s*[smhd]\s*)+)$")
_INTERVAL_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")

_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

# (name, lowest, highest, names for values starting at `lowest`)
_FIELDS: list[tuple[str, int, int, list[str]]] = [
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
]

EXPECTED = (
    "an interval such as 'every 10m', '60s', '1h30m', or a cron expression such as '0 3 * * *'"
)


class ScheduleError(ValueError):
    """The text is not a schedule; the message says which part is wrong."""


@dataclass
class Schedule:
    """A parsed schedule. ``cron`` holds the five fields with names turned into numbers."""

    text: str
    interval_seconds: float | None = None
    cron: tuple[str, str, str, str, str] | None = None

    @property
    def is_interval(self) -> bool:
        return self.interval_seconds is not None

    def __str__(self) -> str:
        return self.text


def parse_schedule(text: str) -> Schedule:
    """Parse ``text`` into a :class:`Schedule` or raise :class:`ScheduleError`."""
    stripped = text.strip().lower()
    if not stripped:
        raise ScheduleError("empty schedule")
    match = _INTERVAL.match(stripped)
    if match:
        seconds = sum(
            float(amount) * _UNIT_SECONDS[unit]
            for amount, unit in _INTERVAL_PART.findall(match.group(1))
        )
        if seconds <= 0:
            raise ScheduleError("an interval must be longer than zero")
        # Beyond this a trigger's next fire time overflows a datetime.
        if not math.isfinite(seconds) or seconds > MAX_DURATION_SECONDS:
            raise ScheduleError(
                f"an interval must be at most {MAX_DURATION_SECONDS} seconds (ten years)"
            )
        return Schedule(text=text.strip(), interval_seconds=seconds)
    expression = _ALIASES.get(stripped, stripped)
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"{_shown(text.strip())} has {len(fields)} fields, a cron expression has 5"
        )
    normalised = tuple(
        _normalise_field(value, *spec) for value, spec in zip(fields, _FIELDS, strict=True)
    )
    # Quick unless day of month or month is restricted (a walk over 28 years of days, ~4 ms).
    if cron_gaps(normalised) is None:  # type: ignore[arg-type]
        raise ScheduleError(
            f"{text.strip()!r} never runs: no date has that day of month, month and weekday"
        )
    return Schedule(text=text.strip(), cron=normalised)  # type: ignore[arg-type]


def _normalise_field(value: str, name: str, low: int, high: int, names: list[str]) -> str:
    parts = []
    for item in value.split(","):
        parts.append(_normalise_item(item, name, low, high, names))
    return ",".join(parts)


def _normalise_item(item: str, name: str, low: int, high: int, names: list[str]) -> str:
    body, _, step = item.partition("/")
    if step and (not _is_number(step) or int(step) == 0):
        raise ScheduleError(f"{name} step {_shown(step)} must be a positive whole number")
    if body == "*":
        normalised, start, end = "*", low, high
    else:
        first, dash, last = body.partition("-")
        start = _value(first, name, low, high, names)
        end = high
        if dash:
            end = _value(last, name, low, high, names)
            if end < start:
                raise ScheduleError(f"{name} range {body!r} runs backwards")
            normalised = f"{start}-{end}"
        else:
            normalised = str(start)
    # APScheduler refuses a step longer than its range (*/60 for minutes) when the daemon
    # builds the trigger, measuring "a-0" to the field's end; such a step selects the first
    # value alone, so write that instead.
    if step and int(step) > (end or high) - start:
        raise ScheduleError(
            f"{name} step {int(step)} is longer than the range {start}-{end} it steps through"
        )
    return f"{normalised}/{int(step)}" if step else normalised


def _shown(text: str) -> str:
    return repr(text if len(text) <= 20 else text[:17] + "...")


def _is_number(text: str) -> bool:
    """ASCII digits, few enough for any field: str.isdigit() also accepts '³', which int()
    refuses, and int() refuses thousands of digits."""
    return text.isascii() and text.isdigit() and len(text) <= 6


def _value(text: str, name: str, low: int, high: int, names: list[str]) -> int:
    if _is_number(text):
        number = int(text)
    elif text in names:
        number = names.index(text) + (1 if name == "month" else 0)
    else:
        raise ScheduleError(f"{name} value {_shown(text)} is not a number from {low} to {high}")
    if not low <= number <= high:
        raise ScheduleError(f"{name} value {number} is outside {low}-{high}")
    return number


def expand_field(value: str, low: int, high: int) -> list[int]:
    """The sorted values a normalised cron field selects (``*/15`` on minutes: 0, 15, 30, 45)."""
    selected: set[int] = set()
    for item in value.split(","):
        body, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, last = body.split("-")
            start, end = int(first), int(last)
        else:
            start = int(body)
            end = high if step_text else start
        selected.update(range(start, end + 1, step))
    return sorted(selected)


def weekday_names(cron_day_of_week: str) -> str:
    """Cron's day-of-week field (0 and 7 are Sunday) as weekday names.

    APScheduler 3 numbers weekdays from Monday, so numbers must not be passed through.
    """
    return ",".join(_WEEKDAYS[day] for day in sorted(_weekday_numbers(cron_day_of_week)))


def _weekday_numbers(cron_day_of_week: str) -> set[int]:
    """The weekdays a day-of-week field selects, Sunday = 0 (cron's 7 is Sunday too)."""
    return {number % 7 for number in expand_field(cron_day_of_week, 0, 7)}


# Day of month, month and weekday together repeat within 28 years (leap days included, the
# century rule aside); weekdays alone within a week.
_CALENDAR_CYCLE_DAYS = 28 * 365 + 7
_WEEK_CYCLE_DAYS = 14
_ANCHOR = (2001, 1, 1)


def cron_gaps(cron: tuple[str, str, str, str, str]) -> tuple[float, float] | None:
    """(shortest, longest) time in seconds between two consecutive runs of a cron schedule, or
    None when it never runs (``0 0 31 2 *``). Like APScheduler, which runs the daemon's
    schedules, a day must match both day of month and day of week."""
    minute, hour, day, month, day_of_week = cron
    times = sorted(
        h * 3600 + m * 60 for h in expand_field(hour, 0, 23) for m in expand_field(minute, 0, 59)
    )
    days, months = set(expand_field(day, 1, 31)), set(expand_field(month, 1, 12))
    weekdays = _weekday_numbers(day_of_week)
    within = [later - earlier for earlier, later in itertools.pairwise(times)]
    cycle = _WEEK_CYCLE_DAYS if day == "*" and month == "*" else _CALENDAR_CYCLE_DAYS
    start = dt.date(*_ANCHOR).toordinal()
    matching = []
    for ordinal in range(start, start + cycle):
        date = dt.date.fromordinal(ordinal)
        # date.weekday() counts from Monday = 0; cron from Sunday = 0.
        if date.day in days and date.month in months and (date.weekday() + 1) % 7 in weekdays:
            matching.append(ordinal)
    if not matching:
        return None
    between = [
        (later - earlier) * 86400 + times[0] - times[-1]
        for earlier, later in itertools.pairwise(matching)
    ]
    gaps = within + between
    if not gaps:  # a single run in the whole cycle
        return float(cycle * 86400), float(cycle * 86400)
    return float(min(gaps)), float(max(gaps))


def schedule_slot(schedule: Schedule, now: float) -> float:
    """The fire time (Unix seconds) of the run ``schedule`` is due for at ``now``: its *slot*.

    Intervals are aligned to the epoch (the daemon's triggers fire on those boundaries plus
    jitter); a cron schedule's slot is its latest fire time at or before ``now``. Every replica
    computes the same slot for the same fire, which is what lets the job lock run it once.
    """
    if schedule.interval_seconds is not None:
        return math.floor(now / schedule.interval_seconds) * schedule.interval_seconds
    return _previous_cron_fire(schedule, now)


def _previous_cron_fire(schedule: Schedule, now: float) -> float:
    # The daemon's own trigger, so a slot is exactly a time the daemon fires at. Only the
    # daemon asks for slots, and it has APScheduler loaded already.
    from awops.triggers import UTC, build_trigger

    trigger = build_trigger(schedule)
    moment = dt.datetime.fromtimestamp(now, UTC)
    lookback = dt.timedelta(minutes=2)
    while True:
        fire = trigger.get_next_fire_time(None, moment - lookback)
        if fire is not None and fire <= moment:
            break
        if lookback > dt.timedelta(days=800):
            return now  # a schedule that never fired: the run is its own slot
        lookback *= 4
    while True:
        following = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        if following is None or following > moment:
            return float(fire.timestamp())
        fire = following

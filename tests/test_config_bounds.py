"""Values that were accepted and broke something later: nan and inf, numbers that overflow a
datetime, NUL bytes, bytes that are not UTF-8, TOML nested thousands deep, cron steps the
scheduler refuses. Each is refused at load time, exit 2, naming the file or variable, the key
and what was expected, before anything touches a database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awops.config import SECTIONS, load_config
from awops.errors import ConfigError
from awops.registry import builtin_registry
from awops.schedule import ScheduleError, parse_schedule
from awops.settings import MAX_DURATION_SECONDS, MAX_NUMBER
from awops.triggers import build_trigger
from tests.fix_awops import run_awops
from tests.fix_pg import PgDatabase

REGISTRY = builtin_registry()
DEEP_ARRAYS = "a = " + "[" * 5000 + "]" * 5000 + "\n"
EXPIRED_ROWS = 50


def numeric_settings() -> list[tuple[str, str, type]]:
    """(TOML table, key, int or float) of every number a section or a job takes."""
    tables: list[tuple[str, Any]] = list(SECTIONS.items())
    tables += [(f"jobs.{job.name}", job.Options) for job in REGISTRY]
    found = []
    for table, cls in tables:
        hints = typing.get_type_hints(cls)
        found += [
            (table, item.name, hints[item.name])
            for item in dataclasses.fields(cls)
            if hints[item.name] in (int, float)
        ]
    common = ("timeout_seconds", "jitter_seconds")
    found += [(f"jobs.{job.name}", key, float) for job in REGISTRY for key in common]
    return found


NUMBERS = numeric_settings()


def load_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "awops.toml"
    path.write_text(text)
    return load_config(path, REGISTRY, {})


@pytest.mark.parametrize(
    ("table", "key", "kind"), NUMBERS, ids=lambda v: str(getattr(v, "__name__", v))
)
def test_every_number_has_a_finite_upper_bound(tmp_path: Path, table: str, key: str, kind: type):
    huge = ["1e300", "10e15"] if kind is float else ["9" * 30, str(MAX_NUMBER + 1)]
    if kind is float:
        huge += ["nan", "inf", "-inf", "-1e300"]
    for value in huge:
        with pytest.raises(ConfigError) as caught:
            load_text(tmp_path, f"[{table}]\n{key} = {value}\n")
        assert caught.value.origin == f"{tmp_path / 'awops.toml'}: {table}.{key}", str(caught.value)
    if key.endswith("_seconds"):
        with pytest.raises(ConfigError, match="at most"):
            load_text(tmp_path, f"[{table}]\n{key} = {MAX_DURATION_SECONDS + 1}\n")


def test_ten_years_is_still_a_duration_and_the_scheduler_takes_it(tmp_path: Path):
    config = load_text(
        tmp_path,
        "[jobs.pg-health]\n"
        f"timeout_seconds = {MAX_DURATION_SECONDS}\njitter_seconds = {MAX_DURATION_SECONDS}\n"
        'schedule = "every 3650d"\n',
    )
    job = config.jobs["pg-health"]
    assert job.schedule.interval_seconds == MAX_DURATION_SECONDS
    trigger = build_trigger(job.schedule, job.jitter_seconds)
    assert trigger.get_next_fire_time(None, dt.datetime.now(dt.UTC)) is not None


cron_items = st.one_of(
    st.just("*"),
    st.integers(0, 70).map(str),
    st.tuples(st.integers(0, 40), st.integers(0, 40)).map(lambda r: f"{r[0]}-{r[1]}"),
)
cron_fields = st.tuples(cron_items, st.one_of(st.just(""), st.integers(0, 70).map(str))).map(
    lambda item: f"{item[0]}/{item[1]}" if item[1] else item[0]
)


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(cron_fields, min_size=5, max_size=5), jitter=st.floats(0, 1e6))
def test_a_schedule_that_parses_is_one_the_scheduler_takes(fields: list[str], jitter: float):
    try:
        schedule = parse_schedule(" ".join(fields))
    except ScheduleError:
        return
    trigger = build_trigger(schedule, jitter)
    trigger.get_next_fire_time(None, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


@pytest.mark.parametrize(
    "text",
    [
        "every 99999999999999999999h",
        "every 1" + "0" * 400 + "s",
        "every 3651d",
        "*/60 * * * *",
        "0 */24 * * *",
        "50/10 * * * *",
        "³ * * * *",
        "*/" + "9" * 5000 + " * * * *",
    ],
)
def test_schedules_that_overflow_or_the_scheduler_refuses_are_schedule_errors(text: str):
    with pytest.raises(ScheduleError):
        parse_schedule(text)


# (file content, environment, the key named, what is expected)
BAD_INPUT = [
    (
        "[jobs.pg-ttl-purge]\nmax_seconds_per_run = nan\n",
        {},
        "jobs.pg-ttl-purge.max_seconds_per_run",
        "a finite number",
    ),
    (
        "[jobs.pg-ttl-purge]\njitter_seconds = inf\n",
        {},
        "jobs.pg-ttl-purge.jitter_seconds",
        "a finite number",
    ),
    (
        "[jobs.pg-ttl-purge]\njitter_seconds = 1e300\n",
        {},
        "jobs.pg-ttl-purge.jitter_seconds",
        "at most",
    ),
    (
        "[jobs.pg-ttl-purge]\ntimeout_seconds = 1e300\n",
        {},
        "jobs.pg-ttl-purge.timeout_seconds",
        "at most",
    ),
    (
        '[jobs.pg-ttl-purge]\nschedule = "every 99999999999999999999h"\n',
        {},
        "jobs.pg-ttl-purge.schedule",
        "at most",
    ),
    (
        '[jobs.pg-ttl-purge]\nschedule = "*/60 * * * *"\n',
        {},
        "jobs.pg-ttl-purge.schedule",
        "step 60",
    ),
    # PostgreSQL takes it in milliseconds, as a 32-bit integer: 30 days would fail every run.
    (
        "[jobs.pg-health]\nquery_timeout_seconds = 2592000\n",
        {},
        "jobs.pg-health.query_timeout_seconds",
        "at most 2147483",
    ),
    (
        "[daemon]\nshutdown_timeout_seconds = 1e300\n",
        {},
        "daemon.shutdown_timeout_seconds",
        "at most",
    ),
    ('[postgresql]\nhost = "127.0.0.1\\u0000x"\n', {}, "postgresql.host", "without NUL"),
    (
        '[jobs.pg-ttl-purge]\nbuckets = ["b\\u0000"]\n',
        {},
        "jobs.pg-ttl-purge.buckets",
        "without NUL",
    ),
    (DEEP_ARRAYS, {}, "", "nested at most"),
    (
        "[postgresql]\nhost." + ".".join(["a"] * 3000) + " = 1\n",
        {},
        "postgresql.host",
        "nested at most",
    ),
    (
        "",
        {"AWOPS_JOB_PG_TTL_PURGE_MAX_SECONDS_PER_RUN": "nan"},
        "AWOPS_JOB_PG_TTL_PURGE_MAX_SECONDS_PER_RUN",
        "a finite number",
    ),
    (
        "",
        {"AWOPS_JOB_PG_TTL_PURGE_JITTER_SECONDS": "1e300"},
        "AWOPS_JOB_PG_TTL_PURGE_JITTER_SECONDS",
        "at most",
    ),
    ("", {"PG_POOL_TIMEOUT": "inf"}, "PG_POOL_TIMEOUT", "a finite number"),
    (
        "",
        {"AWOPS_JOB_PG_TTL_PURGE_SCHEDULE": "every 99999999999999999999h"},
        "AWOPS_JOB_PG_TTL_PURGE_SCHEDULE",
        "at most",
    ),
    # Non-UTF-8 bytes: Python holds them as surrogate escapes, the child gets the bytes back.
    ("", {"PG_DB_NAME": "actingweb\udcff"}, "PG_DB_NAME", "UTF-8"),
    ("", {"PG_DB_PASSWORD": "pw\udce9"}, "PG_DB_PASSWORD", "UTF-8"),
]


@pytest.mark.parametrize(
    ("content", "env", "key", "expected"), BAD_INPUT, ids=range(len(BAD_INPUT))
)
def test_bad_input_exits_2_naming_the_key_before_any_database_is_touched(
    aw_db: PgDatabase, tmp_path: Path, content: str, env: dict[str, str], key: str, expected: str
):
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)"
            " SELECT 'x' || g, 'b', 'b', 'n', 1 FROM generate_series(1, %s) g",
            [EXPIRED_ROWS],
        )
    path = tmp_path / "awops.toml"
    path.write_text(content)
    # The host comes from the file alone, so a NUL-truncated one would reach this database.
    base = {k: v for k, v in aw_db.awops_env().items() if k != "PG_DB_HOST"}
    if "host" not in content:
        base["PG_DB_HOST"] = "127.0.0.1"
    for command in (("config", "--check"), ("run-once", "pg-ttl-purge"), ("run",)):
        result = run_awops(*command, "--config", str(path), env={**base, **env})
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        where = f"environment {key}" if env else f"{path}: {key}" if key else str(path)
        assert f"configuration error: {where}" in result.stderr, result.stderr
        assert f"expected {expected}" in result.stderr or expected in result.stderr
    with aw_db.connect() as conn:
        left = conn.execute("SELECT count(*) FROM attributes WHERE id LIKE 'x%'").fetchone()
    assert left == (EXPIRED_ROWS,), "a job ran although the configuration was refused"


def test_a_secret_that_is_not_utf8_is_not_echoed(tmp_path: Path):
    result = run_awops("config", "--check", env={"PG_DB_PASSWORD": "Kn0wn-\udcff-pw"})
    assert result.returncode == 2
    assert "environment PG_DB_PASSWORD: expected UTF-8 text" in result.stderr
    assert "Kn0wn" not in result.stderr

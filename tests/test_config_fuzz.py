"""Property-based fuzzing of the configuration loader: any TOML document, any environment.

Whatever comes in, loading either succeeds or raises :class:`ConfigError` whose origin names
the file or variable and, for a bad key or value, the key; never another exception. What
loads is safe to use: every number finite and bounded, every string free of NUL and UTF-8,
every schedule one the scheduler takes. A few of the documents and environments go through
the CLI too: exit 2, the key on stderr, no traceback.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from awops.config import SECTIONS, Config, load_config
from awops.config_sources import ENV_ALIASES
from awops.errors import ConfigError
from awops.registry import builtin_registry
from awops.settings import MAX_DURATION_SECONDS, MAX_NUMBER
from tests.fix_awops import clean_environ, run_awops
from tests.fix_pg import PgDatabase

REGISTRY = builtin_registry()
SECTION_KEYS = {
    name: [field.name for field in dataclasses.fields(cls)] for name, cls in SECTIONS.items()
}
JOB_KEYS = {
    job.name: [f.name for f in dataclasses.fields(job.Options)]
    + ["enabled", "schedule", "timeout_seconds", "jitter_seconds"]
    for job in REGISTRY
}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "every 1s", "0 3 * * *", "s3://b/p", "/abs", "postgresql", "-1", "x\0"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def known_section() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def table(name: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        keys = st.one_of(st.sampled_from(SECTION_KEYS[name]), st.text(max_size=8))
        return st.tuples(st.just(name), st.dictionaries(keys, values, max_size=4))

    return st.sampled_from(sorted(SECTIONS)).flatmap(table)


def job_tables() -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    def table(name: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        keys = st.one_of(st.sampled_from(JOB_KEYS[name]), st.text(max_size=8))
        return st.tuples(st.just(name), st.dictionaries(keys, values, max_size=4))

    names = st.one_of(st.sampled_from(sorted(JOB_KEYS)), st.text(max_size=8))
    return st.lists(
        names.flatmap(
            lambda n: (
                table(n)
                if n in JOB_KEYS
                else st.tuples(st.just(n), st.dictionaries(st.text(max_size=6), values, max_size=2))
            )
        ),
        max_size=3,
    ).map(dict)


documents = st.builds(
    lambda sections, jobs, backends, junk: {
        **dict(sections),
        **({"jobs": jobs} if jobs else {}),
        **({"backends": backends} if backends is not None else {}),
        **junk,
    },
    st.lists(known_section(), max_size=4),
    job_tables(),
    st.one_of(st.none(), values),
    st.dictionaries(st.text(max_size=6), values, max_size=1),
)


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) < 0xE000:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return toml_string(value)


def render(document: dict[str, Any]) -> str:
    """TOML for ``document``: top-level values first, then [tables], then [jobs."name"]."""
    lines = [
        f"{toml_string(k)} = {toml_value(v)}"
        for k, v in document.items()
        if not isinstance(v, dict)
    ]
    for name, table in document.items():
        if not isinstance(table, dict) or name == "jobs":
            continue
        lines.append(f"[{toml_string(name)}]")
        lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    for job, table in document.get("jobs", {}).items():
        lines.append(f"[jobs.{toml_string(job)}]")
        lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def dotted_keys(document: dict[str, Any]) -> set[str]:
    keys = set()
    for name, value in document.items():
        keys.add(name)
        if isinstance(value, dict):
            for key, inner in value.items():
                keys.add(f"{name}.{key}")
                if isinstance(inner, dict):
                    keys.update(f"{name}.{key}.{k}" for k in inner)
    return keys


def assert_loads_or_names_the_key(path: Path, document: dict[str, Any] | None) -> None:
    try:
        config = load_config(path, REGISTRY, {})
    except ConfigError as exc:
        assert exc.origin.startswith(str(path)), exc.origin
        if document is not None and exc.origin != str(path):
            named = exc.origin.removeprefix(f"{path}: ")
            assert named in dotted_keys(document), (named, str(exc))
    else:
        assert_safe_to_use(config)


def assert_safe_to_use(config: Config) -> None:
    """Nothing in a loaded configuration can overflow, truncate or crash what uses it."""
    import datetime as dt

    from awops.triggers import build_trigger

    values: list[Any] = []
    for name in SECTIONS:
        section = getattr(config, name)
        values += [getattr(section, f.name) for f in dataclasses.fields(section)]
    for job in config.jobs.values():
        values += [job.timeout_seconds, job.jitter_seconds, job.ping_url]
        values += [getattr(job.options, f.name) for f in dataclasses.fields(job.options)]
        assert 0 < job.timeout_seconds <= MAX_DURATION_SECONDS
        assert 0 <= job.jitter_seconds <= MAX_DURATION_SECONDS
        trigger = build_trigger(job.schedule, job.jitter_seconds)
        assert trigger.get_next_fire_time(None, dt.datetime.now(dt.UTC)) is not None
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float | int) and not isinstance(item, bool):
                assert math.isfinite(item) and abs(item) <= MAX_NUMBER, item
            if isinstance(item, str):
                assert "\0" not in item
                item.encode("utf-8")  # no surrogate escapes of bytes that are not UTF-8


@FUZZ
@given(document=documents)
def test_any_toml_document_loads_or_fails_with_the_key_named(tmp_path: Path, document):
    path = tmp_path / "awops.toml"
    path.write_text(render(document), encoding="utf-8")
    assert_loads_or_names_the_key(path, document)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_file_content_loads_or_fails_cleanly(tmp_path: Path, text):
    path = tmp_path / "awops.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    assert_loads_or_names_the_key(path, None)


ENV_NAMES = sorted(
    set(ENV_ALIASES)
    | {"AWOPS_BACKENDS", "DATABASE_BACKEND"}
    | {f"AWOPS_{s.upper()}_{k.upper()}" for s, keys in SECTION_KEYS.items() for k in keys}
    | {
        f"AWOPS_JOB_{job.upper().replace('-', '_')}_{key.upper()}"
        for job, keys in JOB_KEYS.items()
        for key in keys
    }
    | {"AWOPS_JOB_NOPE_X", "AWOPS_LOCK_NOPE"}
)
# os.environ holds bytes that are not UTF-8 as surrogate escapes, U+DC80 to U+DCFF.
not_utf8 = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)
env_values = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=16
    ),
    st.sampled_from(
        [
            *("0", "-1", "1e400", "nan", "true", "every 0s", "a,b", " ", "65536", "0x10"),
            *("inf", "-inf", "NaN", "1e300", "-1e300", "1e15", "every 99999999999999999999h"),
            *("*/60 * * * *", "9" * 5000, "every 1" + "0" * 400 + "s", "1_000"),
        ]
    ),
    st.integers().map(str),
    st.integers(min_value=2**53 - 2, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.tuples(st.text(max_size=8), not_utf8, st.text(max_size=8)).map("".join),
)


@FUZZ
@given(environ=st.dictionaries(st.sampled_from(ENV_NAMES), env_values, max_size=5))
def test_any_environment_loads_or_fails_naming_the_variable(environ: dict[str, str]):
    try:
        config = load_config(None, REGISTRY, environ)
    except ConfigError as exc:
        variable = exc.origin.removeprefix("environment ")
        assert exc.origin.startswith("environment ") and variable in environ, str(exc)
    else:
        assert_safe_to_use(config)


@pytest.mark.parametrize(
    ("content", "env", "named"),
    [
        ('[lock]\nbackend = "zookeeper"\n', {}, "lock.backend"),
        ("[lock]\nlease_seconds = 1\n", {}, "lock.lease_seconds"),
        ('[postgresql]\nport = "x"\n', {}, "postgresql.port"),
        ("[jobs.pg-ttl-purge]\nbatch = [[]]\n", {}, "jobs.pg-ttl-purge.batch"),
        ('[metrics]\nweb_config_file = "/nonexistent/web.yml"\n', {}, "metrics.web_config_file"),
        ("", {"AWOPS_LOCK_LEASE_SECONDS": "soon"}, "AWOPS_LOCK_LEASE_SECONDS"),
        ("[postgresql]\nport = 5432\n", {"PG_DB_PORT": "\u0663" * 6}, "PG_DB_PORT"),
        ("", {"AWOPS_LOCK_LEASE_SECONDS": "nan"}, "AWOPS_LOCK_LEASE_SECONDS"),
        ("", {"AWOPS_LOCK_TABLE": "locks\udcff"}, "AWOPS_LOCK_TABLE"),
        ("", {"AWOPS_BACKENDS": "postgresql\udcff"}, "AWOPS_BACKENDS"),
        ("", {"AWOPS_JOB_PG_HEALTH_JITTER_SECONDS": "1e300"}, "AWOPS_JOB_PG_HEALTH_JITTER_SECONDS"),
        ("[lock]\nlease_seconds = inf\n", {}, "lock.lease_seconds"),
        ('[lock]\ntable = "t\\u0000"\n', {}, "lock.table"),
    ],
)
def test_the_cli_exits_2_naming_the_key_without_a_traceback(
    tmp_path: Path, content: str, env: dict[str, str], named: str
):
    path = tmp_path / "awops.toml"
    path.write_text(content)
    commands = [("config", "--check")]
    if "lock" in named:  # run-once refuses before touching anything, too
        commands.append(("run-once", "pg-ttl-purge"))
    for command in commands:
        result = run_awops(*command, "--config", str(path), env=env)
        assert result.returncode == 2, result.stderr
        assert named in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


EVIL_SCHEMA = 'x"; DROP TABLE attributes; --\u00e9\u2603'


def test_identifiers_with_quotes_semicolons_and_unicode_are_quoted_never_executed(
    pg_db: PgDatabase,
):
    aw_db = pg_db
    from psycopg import sql

    from tests.fix_schema import create_actingweb_schema

    with aw_db.connect(autocommit=True) as conn:
        create_actingweb_schema(conn, EVIL_SCHEMA)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(EVIL_SCHEMA)))
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)"
            " VALUES ('old', 'b', 'b', 'n', 1), ('new', 'b', 'b', 'n', NULL)"
        )
        # A table the injected text names, elsewhere: it must survive.
        conn.execute("CREATE TABLE public.attributes (id text, ttl_timestamp bigint)")
        conn.execute("INSERT INTO public.attributes VALUES ('old', 1)")
    env = aw_db.awops_env(PG_DB_SCHEMA=EVIL_SCHEMA)
    result = run_awops("run-once", "pg-ttl-purge", "pg-health", "--json", env=env)
    assert result.returncode in (0, 1), result.stderr
    statuses = {job["job"]: job["status"] for job in json.loads(result.stdout)["jobs"]}
    assert statuses["pg-ttl-purge"] == "ok", result.stdout
    # The lock's slot table is created in that schema too.
    from awops.context import Resources
    from awops.locks import Locks

    config = load_config(None, REGISTRY, clean_environ(env))
    resources = Resources(config)
    try:
        locks = Locks(config.lock, lambda: resources.pg, lambda: resources.aws, "x", "me")
        claim = locks.claim("pg-ttl-purge", "postgresql", 10.0)
        assert claim is not None and claim.lease is not None
        claim.lease.release()
    finally:
        resources.close()
    with aw_db.connect() as conn:
        left = conn.execute(
            sql.SQL("SELECT id FROM {}.attributes ORDER BY id").format(sql.Identifier(EVIL_SCHEMA))
        ).fetchall()
        public = conn.execute("SELECT count(*) FROM public.attributes").fetchone()
        lock_table = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'awops_locks'",
            [EVIL_SCHEMA],
        ).fetchone()
    assert left == [("new",)]
    assert public == (1,), "the other schema's table is untouched, nothing was dropped"
    assert lock_table == (1,)

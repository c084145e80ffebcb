"""Configuration: a TOML file, then environment variables on top, validated before anything runs.

ActingWeb's own variables (``PG_DB_*``, ``PG_POOL_*``, ``AWS_DB_*``, ``DATABASE_BACKEND``) are
honoured with ActingWeb's defaults, so awops runs beside an application with no extra setting.
Every awops-specific setting can also be given as ``AWOPS_<SECTION>_<KEY>`` or, for a job,
``AWOPS_JOB_<JOB>_<KEY>`` (dashes in the job name become underscores).
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from awops.errors import ConfigError
from awops.schedule import EXPECTED as SCHEDULE_EXPECTED
from awops.schedule import Schedule, ScheduleError, parse_schedule
from awops.settings import (
    Raw,
    bounded,
    build_section,
    convert,
    dynamodb_name_list,
    dynamodb_name_part,
    mask_url_password,
    pg_identifier,
    secret_fields,
    secret_values,
    setting,
)

if TYPE_CHECKING:
    from awops.registry import JobRegistry

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/awops/awops.toml")
BACKENDS = ("postgresql", "dynamodb")
# ActingWeb's own default when DATABASE_BACKEND is unset.
ACTINGWEB_DEFAULT_BACKEND = "dynamodb"
# PostgreSQL's own ceiling on max_connections: no pool can be larger.
_PG_MAX_CONNECTIONS = 262_143


def _host_port(value: str) -> str | None:
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return "HOST:PORT, for example 0.0.0.0:9647"
    return None


def _http_url(value: str) -> str | None:
    if value and urlsplit(value).scheme not in ("http", "https"):
        return "an http:// or https:// URL"
    return None


def _web_config_file(value: str) -> str | None:
    if not value:
        return None
    from awops.metrics.http import WebConfigError, load_web_config

    try:
        load_web_config(value)
    except WebConfigError as exc:
        return f"a valid web config file ({exc})"
    except RecursionError:  # YAML nested thousands deep
        return f"a valid web config file ({value}: nested too deep to read)"
    return None


def _backup_targets(value: list[str]) -> str | None:
    for target in value:
        parts = urlsplit(target)
        if parts.scheme == "s3" and parts.netloc:
            continue
        if parts.scheme == "file" and parts.path.startswith("/"):
            continue
        if not parts.scheme and target.startswith("/"):
            continue
        return "backup targets like s3://bucket/prefix, file:///var/backups/awops or /abs/path"
    return None


@dataclass
class PostgresSettings:
    host: str = setting("localhost", doc="PG_DB_HOST")
    port: int = setting(5432, minimum=1, maximum=65535, doc="PG_DB_PORT")
    dbname: str = setting("actingweb", doc="PG_DB_NAME")
    user: str = setting("actingweb", doc="PG_DB_USER")
    password: str = setting("", secret=True, doc="PG_DB_PASSWORD")
    schema: str = setting("public", check=pg_identifier, doc="PG_DB_SCHEMA")
    prefix: str = setting("", doc="PG_DB_PREFIX; the schema used is <prefix><schema>")
    sslmode: str = setting(
        "prefer", choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
    )
    pool_min_size: int = setting(2, minimum=0, maximum=_PG_MAX_CONNECTIONS, doc="PG_POOL_MIN_SIZE")
    pool_max_size: int = setting(10, minimum=1, maximum=_PG_MAX_CONNECTIONS, doc="PG_POOL_MAX_SIZE")
    pool_timeout_seconds: float = setting(30.0, minimum=0.1, doc="PG_POOL_TIMEOUT")
    connect_timeout_seconds: int = setting(10, minimum=1, maximum=3600)
    application_name: str = setting("awops")

    @property
    def search_schema(self) -> str:
        """The schema as ActingWeb resolves it: ``PG_DB_PREFIX`` + ``PG_DB_SCHEMA``."""
        return f"{self.prefix}{self.schema}"

    @property
    def display_target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


@dataclass
class DynamoDBSettings:
    prefix: str = setting("demo_actingweb", check=dynamodb_name_part, doc="AWS_DB_PREFIX")
    region: str = setting("us-west-1", doc="AWS_DEFAULT_REGION")
    endpoint_url: str = setting("", check=_http_url, doc="AWS_DB_HOST")
    use_property_lookup_table: bool = setting(True, doc="USE_PROPERTY_LOOKUP_TABLE")
    retry_mode: str = setting("standard", choices=("standard", "adaptive"))
    max_attempts: int = setting(5, minimum=1, maximum=20)
    connect_timeout_seconds: float = setting(5.0, minimum=0.1)
    read_timeout_seconds: float = setting(10.0, minimum=0.1)
    expected_tables: list[str] = setting(
        [],
        check=dynamodb_name_list,
        doc="table suffixes under the prefix; empty = ActingWeb 3.13+ (legacy set in legacy mode)",
    )
    describe_cache_seconds: float = setting(
        60.0, minimum=0, doc="DescribeTable answers shared by the DynamoDB checks for this long"
    )


@dataclass
class BackupSettings:
    targets: list[str] = setting([], check=_backup_targets, doc="AWOPS_BACKUP_TARGET")
    s3_endpoint_url: str = setting(
        "", check=_http_url, doc="S3-compatible endpoint (MinIO, Ceph); empty = AWS"
    )
    s3_part_size_bytes: int = setting(
        8 * 1024 * 1024,
        minimum=5 * 1024 * 1024,
        maximum=5 * 1024 * 1024 * 1024,
        doc="multipart part size (S3 allows 10000 parts); about two parts stay in memory",
    )
    s3_sse: str = setting(
        "",
        choices=("", "AES256", "aws:kms", "aws:kms:dsse"),
        doc="ServerSideEncryption of uploaded objects",
    )
    s3_sse_kms_key_id: str = setting("", doc="SSEKMSKeyId with s3_sse = aws:kms")
    s3_storage_class: str = setting("", doc="StorageClass of uploaded objects (e.g. STANDARD_IA)")
    s3_abort_retry_seconds: float = setting(
        60.0, minimum=0, doc="how long to keep retrying to abort a failed multipart upload"
    )


@dataclass
class MetricsSettings:
    addr: str = setting("0.0.0.0:9647", check=_host_port, doc="AWOPS_METRICS_ADDR")
    pushgateway_url: str = setting("", check=_http_url, doc="AWOPS_PUSHGATEWAY_URL")
    web_config_file: str = setting(
        "",
        check=_web_config_file,
        doc="TLS and basic auth for the HTTP endpoints (Prometheus web-config.yml format)",
    )


def _lock_table(value: str) -> str | None:
    if pg_identifier(value) is not None or dynamodb_name_part(value) is not None:
        return "a table name of letters, digits, '_', '-' or '.' (at most 63 bytes)"
    return None


@dataclass
class LockSettings:
    backend: str = setting(
        "auto",
        choices=("auto", "postgresql", "dynamodb", "none"),
        doc="AWOPS_LOCK_BACKEND; auto = each job locks in its own backend; none = no locking",
    )
    lease_seconds: float = setting(
        30.0, minimum=3, maximum=3600, doc="a dead holder's lock moves on within this long"
    )
    table: str = setting(
        "awops_locks",
        check=_lock_table,
        doc="slot records: this table in the PostgreSQL schema, <prefix>_<table> in DynamoDB",
    )
    create_table: bool = setting(True, doc="create the lock table when it is missing")
    scope: str = setting(
        "changes-data",
        choices=("changes-data", "all"),
        doc="changes-data: jobs that change data run once per slot, read-only checks run on"
        " every replica so each /metrics stays fresh; all: every job runs once per slot",
    )


@dataclass
class DaemonSettings:
    shutdown_timeout_seconds: float = setting(30.0, minimum=0)
    instance: str = setting("", doc="instance label for pushes; defaults to the host name")


@dataclass
class LoggingSettings:
    format: str = setting(
        "text",
        choices=("text", "json", "auto"),
        doc="AWOPS_LOG_FORMAT; auto = text on a terminal, else json",
    )
    level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass
class NotificationSettings:
    failure_webhook_url: str = setting(
        "", secret=True, check=_http_url, doc="JSON POST for every failed run"
    )
    timeout_seconds: float = setting(5.0, minimum=0.1, maximum=60, doc="per ping or webhook")
    retries: int = setting(2, minimum=0, maximum=5, doc="retries after a failed delivery")


SECTIONS: dict[str, type[Any]] = {
    "postgresql": PostgresSettings,
    "dynamodb": DynamoDBSettings,
    "backup": BackupSettings,
    "metrics": MetricsSettings,
    "daemon": DaemonSettings,
    "logging": LoggingSettings,
    "notifications": NotificationSettings,
    "lock": LockSettings,
}

ENV_ALIASES: dict[str, tuple[str, str]] = {
    "PG_DB_HOST": ("postgresql", "host"),
    "PG_DB_PORT": ("postgresql", "port"),
    "PG_DB_NAME": ("postgresql", "dbname"),
    "PG_DB_USER": ("postgresql", "user"),
    "PG_DB_PASSWORD": ("postgresql", "password"),
    "PG_DB_SCHEMA": ("postgresql", "schema"),
    "PG_DB_PREFIX": ("postgresql", "prefix"),
    "PG_POOL_MIN_SIZE": ("postgresql", "pool_min_size"),
    "PG_POOL_MAX_SIZE": ("postgresql", "pool_max_size"),
    "PG_POOL_TIMEOUT": ("postgresql", "pool_timeout_seconds"),
    "AWS_DB_PREFIX": ("dynamodb", "prefix"),
    "AWS_DEFAULT_REGION": ("dynamodb", "region"),
    "AWS_DB_HOST": ("dynamodb", "endpoint_url"),
    "USE_PROPERTY_LOOKUP_TABLE": ("dynamodb", "use_property_lookup_table"),
    "AWOPS_BACKUP_TARGET": ("backup", "targets"),
    "AWOPS_BACKUP_TARGETS": ("backup", "targets"),
    "AWOPS_PUSHGATEWAY_URL": ("metrics", "pushgateway_url"),
    "AWOPS_LOG_FORMAT": ("logging", "format"),
    "AWOPS_LOG_LEVEL": ("logging", "level"),
}
# awops' own variables that are not settings, and Kubernetes' service links for a Service
# named "awops" (AWOPS_PORT, AWOPS_SERVICE_HOST, ...), which must not read as typos.
_ENV_IGNORED = ("AWOPS_CONFIG", "AWOPS_BACKENDS", "AWOPS_PORT", "AWOPS_SERVICE_")

# A configuration nests four deep ([jobs.<name>] key = [list]); far more is a broken file.
MAX_TOML_DEPTH = 16

_JOB_COMMON_KEYS = ("enabled", "schedule", "timeout_seconds", "jitter_seconds", "ping_url")


@dataclass
class JobConfig:
    """One job's effective settings: the common keys plus its own ``options`` dataclass."""

    enabled: bool
    schedule: Schedule
    timeout_seconds: float
    jitter_seconds: float
    options: Any
    ping_url: str = ""  # healthchecks.io style: <url>/start, <url>, <url>/fail; a secret


@dataclass
class Config:
    source: str
    backends: frozenset[str]
    postgresql: PostgresSettings = field(default_factory=PostgresSettings)
    dynamodb: DynamoDBSettings = field(default_factory=DynamoDBSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    lock: LockSettings = field(default_factory=LockSettings)
    jobs: Mapping[str, JobConfig] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        """Every secret value in the configuration, for scrubbing logs and error messages:
        secret settings, and the password of every URL with credentials."""
        found = []
        for name in SECTIONS:
            found += secret_values(getattr(self, name))
        for job in self.jobs.values():
            found += secret_values(job.options)
            found.append(job.ping_url)
        return [value for value in found if value]

    def job_is_active(self, name: str, backend: str) -> bool:
        """Enabled and its backend configured: what the daemon schedules and ``--all`` runs."""
        return self.jobs[name].enabled and backend in self.backends


def resolve_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if environ.get("AWOPS_CONFIG"):
        return Path(environ["AWOPS_CONFIG"])
    if DEFAULT_CONFIG_PATH.exists():
        return DEFAULT_CONFIG_PATH
    return None


def load_config(
    path: Path | None,
    registry: JobRegistry,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read ``path`` (may be None: defaults only) and ``environ`` into a validated Config.

    Raises :class:`ConfigError` naming the file or variable, the key and what was expected.
    """
    environ = os.environ if environ is None else environ
    document = _read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    layers = _file_layers(document, source, registry)
    _apply_environment(layers, environ, registry)

    # A configured job is validated even when it is not going to run.
    registry.load(layers.jobs)
    sections = {
        name: build_section(cls, layers.sections.get(name, {}), name)
        for name, cls in SECTIONS.items()
    }
    _check_pool_sizes(sections["postgresql"], layers.sections.get("postgresql", {}))
    jobs = {
        name: _build_job(name, registry, layers.jobs.get(name, {})) for name in registry.names()
    }
    return Config(
        source=source,
        backends=_resolve_backends(layers.backends, environ),
        jobs=jobs,
        **sections,
    )


@dataclass
class _Layers:
    backends: Raw | None = None
    sections: dict[str, dict[str, Raw]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Raw]] = field(default_factory=dict)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            str(path), "an existing TOML configuration file", "no such file"
        ) from None
    except PermissionError:
        raise ConfigError(
            str(path), "a readable TOML configuration file", "permission denied"
        ) from None
    except IsADirectoryError:
        raise ConfigError(str(path), "a TOML configuration file", "a directory") from None
    except OSError as exc:  # a symlink loop, an I/O error
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(str(path), "a readable TOML configuration file", reason) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "a UTF-8 TOML file", "undecodable bytes") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per level of [[[...]]] or {a = {...}}
        raise ConfigError(
            str(path), f"values nested at most {MAX_TOML_DEPTH} deep", "nesting too deep to read"
        ) from None
    too_deep = _nested_too_deep(document)
    if too_deep is not None:
        raise ConfigError(f"{path}: {too_deep}", f"values nested at most {MAX_TOML_DEPTH} deep")
    return document


def _nested_too_deep(document: dict[str, Any]) -> str | None:
    """The key holding a value nested deeper than :data:`MAX_TOML_DEPTH`, else None.

    Dotted keys (``a.b.c = 1``) nest without recursing in tomllib, and such a value would
    exhaust the stack later, in repr() or a comparison; this walk does not recurse.
    """
    stack: list[tuple[Any, tuple[str, ...], int]] = [(document, (), 0)]
    while stack:
        value, keys, depth = stack.pop()
        if depth > MAX_TOML_DEPTH:
            return ".".join(keys[:3]) + ("..." if len(keys) > 3 else "")
        if isinstance(value, dict):
            stack += [(item, (*keys, str(key)), depth + 1) for key, item in value.items()]
        elif isinstance(value, list):
            stack += [(item, keys, depth + 1) for item in value]
    return None


def _file_layers(document: dict[str, Any], source: str, registry: JobRegistry) -> _Layers:
    layers = _Layers()
    for top_key, value in document.items():
        origin = f"{source}: {top_key}"
        if top_key == "backends":
            layers.backends = Raw(value, origin)
        elif top_key in SECTIONS:
            layers.sections[top_key] = _table(value, origin, top_key)
        elif top_key == "jobs":
            if not isinstance(value, dict):
                raise ConfigError(origin, "a table of jobs, [jobs.<name>]", value)
            for job_name, job_table in value.items():
                job_origin = f"{source}: jobs.{job_name}"
                if job_name not in registry:
                    known = ", ".join(registry.known_names())
                    raise ConfigError(job_origin, f"a known job name ({known})")
                layers.jobs[job_name] = _table(job_table, job_origin, f"jobs.{job_name}")
        else:
            known = ", ".join(["backends", *SECTIONS, "jobs"])
            raise ConfigError(origin, f"a known top-level key ({known})")
    return layers


def _table(value: Any, origin: str, dotted: str) -> dict[str, Raw]:
    if not isinstance(value, dict):
        raise ConfigError(origin, f"a table [{dotted}]", value)
    source = origin.rsplit(": ", 1)[0]
    return {key: Raw(item, f"{source}: {dotted}.{key}") for key, item in value.items()}


def _apply_environment(layers: _Layers, environ: Mapping[str, str], registry: JobRegistry) -> None:
    job_prefixes = {
        "AWOPS_JOB_" + name.upper().replace("-", "_") + "_": name for name in registry.known_names()
    }
    for variable in sorted(environ):
        if not variable.startswith("AWOPS_") and variable not in ENV_ALIASES:
            continue
        origin = f"environment {_printable(variable)}"
        if variable.startswith(_ENV_IGNORED):
            continue
        value = _utf8(environ[variable], origin)
        if variable in ENV_ALIASES:
            section, key = ENV_ALIASES[variable]
            layers.sections.setdefault(section, {})[key] = Raw(value, origin, from_env=True)
            continue
        if variable.startswith("AWOPS_JOB_"):
            for prefix, job_name in sorted(job_prefixes.items(), key=lambda kv: -len(kv[0])):
                if variable.startswith(prefix):
                    key = variable[len(prefix) :].lower()
                    layers.jobs.setdefault(job_name, {})[key] = Raw(value, origin, from_env=True)
                    break
            else:
                known = ", ".join(sorted(job_prefixes))
                raise ConfigError(origin, f"a variable starting with one of {known}")
            continue
        for section in SECTIONS:
            prefix = f"AWOPS_{section.upper()}_"
            if variable.startswith(prefix):
                key = variable[len(prefix) :].lower()
                layers.sections.setdefault(section, {})[key] = Raw(value, origin, from_env=True)
                break
        else:
            logger.warning("ignoring unknown environment variable %s", _printable(variable))


def _utf8(value: str, origin: str) -> str:
    """``value``, unless it came from bytes that are not UTF-8 (Python's os.environ holds those
    as surrogate escapes, which would reach a database or a log line as garbage)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Not echoed: it may be a password.
        raise ConfigError(origin, "UTF-8 text", "bytes that are not UTF-8") from None
    return value


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _resolve_backends(file_value: Raw | None, environ: Mapping[str, str]) -> frozenset[str]:
    expected = "a list of backends from " + ", ".join(BACKENDS)
    if environ.get("AWOPS_BACKENDS"):
        origin = "environment AWOPS_BACKENDS"
        raw = Raw(_utf8(environ["AWOPS_BACKENDS"], origin), origin, from_env=True)
    elif environ.get("DATABASE_BACKEND"):
        origin = "environment DATABASE_BACKEND"
        raw = Raw(_utf8(environ["DATABASE_BACKEND"], origin), origin, from_env=True)
    elif file_value is not None:
        raw = file_value
    else:
        return frozenset({ACTINGWEB_DEFAULT_BACKEND})
    if isinstance(raw.value, str):
        items: Any = [part.strip().lower() for part in raw.value.split(",") if part.strip()]
    else:
        items = raw.value
    if not isinstance(items, list) or not items or any(item not in BACKENDS for item in items):
        raise ConfigError(raw.origin, expected, raw.value)
    return frozenset(items)


def _check_pool_sizes(pg: PostgresSettings, raw: Mapping[str, Raw]) -> None:
    if pg.pool_min_size > pg.pool_max_size:
        origin = (
            raw.get("pool_min_size") or raw.get("pool_max_size") or Raw(0, "postgresql")
        ).origin
        raise ConfigError(
            origin,
            f"pool_min_size ({pg.pool_min_size}) not above pool_max_size ({pg.pool_max_size})",
        )


def _build_job(name: str, registry: JobRegistry, raw: Mapping[str, Raw]) -> JobConfig:
    job_class = registry.get(name)
    common = {key: raw[key] for key in _JOB_COMMON_KEYS if key in raw}
    own = {key: value for key, value in raw.items() if key not in _JOB_COMMON_KEYS}
    options = build_section(job_class.Options, own, f"jobs.{name}")

    enabled = job_class.default_enabled
    if "enabled" in common:
        enabled = convert(common["enabled"], bool, {})
    schedule = parse_schedule(job_class.default_schedule)
    if "schedule" in common:
        schedule = _parse_schedule_setting(common["schedule"])
    timeout = job_class.default_timeout_seconds
    if "timeout_seconds" in common:
        timeout = convert(
            common["timeout_seconds"], float, bounded("timeout_seconds", {"minimum": 0.1})
        )
    jitter = default_jitter_seconds(schedule)
    if "jitter_seconds" in common:
        jitter = convert(common["jitter_seconds"], float, bounded("jitter_seconds", {"minimum": 0}))
    ping_url = ""
    if "ping_url" in common:
        ping_url = convert(common["ping_url"], str, {"check": _http_url, "secret": True})
    return JobConfig(enabled, schedule, timeout, jitter, options, ping_url)


def _parse_schedule_setting(raw: Raw) -> Schedule:
    if not isinstance(raw.value, str):
        raise ConfigError(raw.origin, SCHEDULE_EXPECTED, raw.value)
    try:
        return parse_schedule(raw.value)
    except ScheduleError as exc:
        raise ConfigError(raw.origin, f"{SCHEDULE_EXPECTED} ({exc})", raw.value) from None


def default_jitter_seconds(schedule: Schedule) -> float:
    """A tenth of an interval, at most a minute, so replicas and restarts spread their runs."""
    if schedule.interval_seconds is not None:
        return min(schedule.interval_seconds / 10, 60.0)
    return 30.0


def render_config(config: Config) -> str:
    """The effective configuration as TOML, secrets masked."""
    lines = [f"# effective configuration (file: {config.source})"]
    lines.append(f"backends = {_toml_value(sorted(config.backends))}")
    for name in SECTIONS:
        section = getattr(config, name)
        lines += ["", f"[{name}]"]
        lines += _render_fields(section)
    for job_name, job in config.jobs.items():
        lines += ["", f"[jobs.{job_name}]"]
        lines.append(f"enabled = {_toml_value(job.enabled)}")
        lines.append(f"schedule = {_toml_value(job.schedule.text)}")
        lines.append(f"timeout_seconds = {_toml_value(job.timeout_seconds)}")
        lines.append(f"jitter_seconds = {_toml_value(job.jitter_seconds)}")
        lines.append(f"ping_url = {_toml_value('********' if job.ping_url else '')}")
        lines += _render_fields(job.options)
    return "\n".join(lines) + "\n"


def _render_fields(section: Any) -> list[str]:
    secrets = secret_fields(type(section))
    rendered = []
    for item in fields(section):
        value = getattr(section, item.name)
        if item.name in secrets and value:
            value = "********"
        elif isinstance(value, str):
            value = mask_url_password(value)
        elif isinstance(value, list):
            value = [mask_url_password(v) if isinstance(v, str) else v for v in value]
        rendered.append(f"{item.name} = {_toml_value(value)}")
    return rendered


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'

"""Configuration: a TOML file, then environment variables on top, validated before anything runs.

ActingWeb's own variables (``PG_DB_*``, ``PG_POOL_*``, ``AWS_DB_*``, ``DATABASE_BACKEND``) are
honoured with ActingWeb's defaults, so awops runs beside an application with no extra setting.
Every awops-specific setting can also be given as ``AWOPS_<SECTION>_<KEY>`` or, for a job,
``AWOPS_JOB_<JOB>_<KEY>`` (dashes in the job name become underscores).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from awops.config_sources import (
    DEFAULT_BACKENDS_ORIGIN,
    apply_environment,
    file_layers,
    read_toml,
    resolve_backends,
)
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
    pg_identifier,
    secret_values,
    setting,
)

if TYPE_CHECKING:
    from awops.registry import JobRegistry

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/awops/awops.toml")
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
    # The exposition server's package (and PyYAML) only when a web config is named.
    from awops.metrics.http import WebConfigError, load_web_config

    try:
        load_web_config(value)
    except WebConfigError as exc:
        return f"a valid web config file ({exc})"
    except RecursionError:  # YAML nested thousands deep
        return f"a valid web config file ({value}: nested too deep to read)"
    return None


def _backup_targets(value: list[str]) -> str | None:
    # Only a configuration that names backup targets pays for their URL rules.
    from awops.backup.target_url import EXPECTED_LIST, target_url_problem

    for target in value:
        problem = target_url_problem(target)
        if problem is not None:
            return f"{EXPECTED_LIST} ({problem})"
    return None


@dataclass
class PostgresSettings:
    host: str = setting("localhost", doc="server host name, IP address or socket directory")
    port: int = setting(5432, minimum=1, maximum=65535, doc="server port")
    dbname: str = setting("actingweb", doc="ActingWeb's database")
    user: str = setting("actingweb", doc="role awops connects as")
    password: str = setting("", secret=True, doc="that role's password")
    schema: str = setting("public", check=pg_identifier, doc="schema of ActingWeb's tables")
    prefix: str = setting(
        "", doc="schema prefix, as ActingWeb's: the schema used is <prefix><schema>"
    )
    sslmode: str = setting(
        "prefer",
        choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
        doc="libpq sslmode of every connection (pool, locks, pg_dump, pg_restore)",
    )
    pool_min_size: int = setting(
        2, minimum=0, maximum=_PG_MAX_CONNECTIONS, doc="connections the pool keeps open"
    )
    pool_max_size: int = setting(
        10, minimum=1, maximum=_PG_MAX_CONNECTIONS, doc="connections the pool opens at most"
    )
    pool_timeout_seconds: float = setting(
        30.0, minimum=0.1, doc="how long a job waits for a pooled connection"
    )
    connect_timeout_seconds: int = setting(
        10, minimum=1, maximum=3600, doc="libpq connect_timeout of every new connection"
    )
    application_name: str = setting(
        "awops", doc="application_name awops' sessions show in pg_stat_activity"
    )

    @property
    def search_schema(self) -> str:
        """The schema as ActingWeb resolves it: ``PG_DB_PREFIX`` + ``PG_DB_SCHEMA``."""
        return f"{self.prefix}{self.schema}"

    @property
    def display_target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


@dataclass
class DynamoDBSettings:
    prefix: str = setting(
        "demo_actingweb", check=dynamodb_name_part, doc="table prefix: <prefix>_actors, ..."
    )
    region: str = setting("us-west-1", doc="AWS region of the tables (and of RDS, S3 calls)")
    endpoint_url: str = setting(
        "", check=_http_url, doc="DynamoDB endpoint (DynamoDB Local); empty = AWS"
    )
    use_property_lookup_table: bool = setting(
        True, doc="ActingWeb 3.13+ property lookup table; false = the legacy property-index GSI"
    )
    retry_mode: str = setting(
        "standard", choices=("standard", "adaptive"), doc="botocore retry mode"
    )
    max_attempts: int = setting(
        5, minimum=1, maximum=20, doc="calls in total per request, first one included"
    )
    connect_timeout_seconds: float = setting(5.0, minimum=0.1, doc="botocore connect timeout")
    read_timeout_seconds: float = setting(10.0, minimum=0.1, doc="botocore read timeout")
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
    targets: list[str] = setting(
        [],
        check=_backup_targets,
        doc="where pg-backup writes: s3://bucket/prefix, file:///dir or /dir; empty = nowhere",
    )
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
    addr: str = setting(
        "0.0.0.0:9647", check=_host_port, doc="HOST:PORT of /metrics, /healthz and /readyz"
    )
    pushgateway_url: str = setting(
        "", check=_http_url, doc="run-once pushes its metrics to this Pushgateway; empty = no push"
    )
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
        doc="auto = each job locks in its own backend; none = no locking",
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
    shutdown_timeout_seconds: float = setting(
        30.0, minimum=0, doc="on SIGTERM, how long running jobs get to finish"
    )
    instance: str = setting("", doc="instance label for pushes; defaults to the host name")


@dataclass
class LoggingSettings:
    format: str = setting(
        "text",
        choices=("text", "json", "auto"),
        doc="text, json (JSON lines), or auto: text on a terminal, else json",
    )
    level: str = setting(
        "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), doc="lowest level logged"
    )


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

# The keys every [jobs.<name>] table has besides the job's own, with what each does.
JOB_COMMON_KEYS: dict[str, str] = {
    "enabled": "run the job; each job has its own default (see its schedule)",
    "schedule": "an interval (every 10m, 1h30m) or a five-field cron expression in UTC",
    "timeout_seconds": "a run still going after this long is cancelled and reported as error",
    "jitter_seconds": "each run starts up to this much later, at random; default a tenth of"
    " the interval, at most a minute",
    "ping_url": "healthchecks-style URL pinged at <url>/start, <url> and <url>/fail (a secret)",
}


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
    # Where ``backends`` came from: "environment DATABASE_BACKEND=postgresql", "<file>:
    # backends", or DEFAULT_BACKENDS_ORIGIN when nothing chose them.
    backends_origin: str = DEFAULT_BACKENDS_ORIGIN

    @property
    def backends_by_default(self) -> bool:
        """True when nothing chose the backends: ActingWeb's default, DynamoDB, applies."""
        return self.backends_origin == DEFAULT_BACKENDS_ORIGIN

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
    document = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    layers = file_layers(document, source, registry, SECTIONS)
    apply_environment(layers, environ, registry, SECTIONS)

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
    backends, backends_origin = resolve_backends(layers.backends, environ)
    return Config(
        source=source,
        backends=backends,
        jobs=jobs,
        backends_origin=backends_origin,
        **sections,
    )


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
    common = {key: raw[key] for key in JOB_COMMON_KEYS if key in raw}
    own = {key: value for key, value in raw.items() if key not in JOB_COMMON_KEYS}
    options = build_section(job_class.Options, own, f"jobs.{name}", JOB_COMMON_KEYS)

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

"""Where raw values come from: the TOML file, then the environment on top.

Each value is kept as read, with its origin (``/etc/awops/awops.toml: jobs.pg-health.schedule``
or ``environment PG_DB_PORT``), for :mod:`awops.config` to validate.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from awops.errors import ConfigError
from awops.settings import Raw, did_you_mean

if TYPE_CHECKING:
    from awops.registry import JobRegistry

logger = logging.getLogger(__name__)

BACKENDS = ("postgresql", "dynamodb")
# ActingWeb's own default when DATABASE_BACKEND is unset.
ACTINGWEB_DEFAULT_BACKEND = "dynamodb"
# Config.backends_origin when nothing chose the backends.
DEFAULT_BACKENDS_ORIGIN = (
    f"DATABASE_BACKEND unset: ActingWeb's default, {ACTINGWEB_DEFAULT_BACKEND}"
)

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


@dataclass
class Layers:
    """Raw values by section and job, file first, environment on top."""

    backends: Raw | None = None
    sections: dict[str, dict[str, Raw]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Raw]] = field(default_factory=dict)


def read_toml(path: Path) -> dict[str, Any]:
    """The document in ``path``; :class:`ConfigError` for anything that keeps it from being
    read, parsed, or used without exhausting the stack."""
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


def file_layers(
    document: dict[str, Any], source: str, registry: JobRegistry, sections: Collection[str]
) -> Layers:
    """The file's values: ``backends``, the ``sections`` and ``[jobs.<name>]`` tables."""
    layers = Layers()
    for top_key, value in document.items():
        origin = f"{source}: {top_key}"
        if top_key == "backends":
            layers.backends = Raw(value, origin)
        elif top_key in sections:
            layers.sections[top_key] = _table(value, origin, top_key)
        elif top_key == "jobs":
            if not isinstance(value, dict):
                raise ConfigError(origin, "a table of jobs, [jobs.<name>]", value)
            for job_name, job_table in value.items():
                job_origin = f"{source}: jobs.{job_name}"
                if job_name not in registry:
                    known = registry.known_names()
                    hint = did_you_mean(str(job_name), known)
                    raise ConfigError(job_origin, f"a known job name ({', '.join(known)}){hint}")
                layers.jobs[job_name] = _table(job_table, job_origin, f"jobs.{job_name}")
        else:
            known = ["backends", *sections, "jobs"]
            hint = did_you_mean(str(top_key), known)
            raise ConfigError(origin, f"a known top-level key ({', '.join(known)}){hint}")
    return layers


def _table(value: Any, origin: str, dotted: str) -> dict[str, Raw]:
    if not isinstance(value, dict):
        raise ConfigError(origin, f"a table [{dotted}]", value)
    source = origin.rsplit(": ", 1)[0]
    return {key: Raw(item, f"{source}: {dotted}.{key}") for key, item in value.items()}


def apply_environment(
    layers: Layers, environ: Mapping[str, str], registry: JobRegistry, sections: Collection[str]
) -> None:
    """Put the variables awops reads on top of ``layers``: ActingWeb's names,
    ``AWOPS_<SECTION>_<KEY>`` and ``AWOPS_JOB_<JOB>_<KEY>``."""
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
                known = sorted(job_prefixes)
                hint = _closest_prefix(_printable(variable), known)
                expected = f"a variable starting with one of {', '.join(known)}{hint}"
                raise ConfigError(origin, expected)
            continue
        for section in sections:
            prefix = f"AWOPS_{section.upper()}_"
            if variable.startswith(prefix):
                key = variable[len(prefix) :].lower()
                layers.sections.setdefault(section, {})[key] = Raw(value, origin, from_env=True)
                break
        else:
            logger.warning(
                "ignoring unknown environment variable %s%s",
                _printable(variable),
                _closest_prefix(
                    _printable(variable), [f"AWOPS_{section.upper()}_" for section in sections]
                ),
            )


def _closest_prefix(variable: str, prefixes: Collection[str]) -> str:
    """``"; did you mean AWOPS_JOB_PG_HEALTH_...?"`` for the prefix closest to the start of
    ``variable`` (``AWOPS_JOB_PG_HELTH_ENABLED``), else ``""``."""
    import difflib  # only on an error: start-up does not pay for it

    scored = [
        (difflib.SequenceMatcher(None, variable[: len(prefix)], prefix).ratio(), prefix)
        for prefix in prefixes
    ]
    if not scored:
        return ""
    ratio, prefix = max(scored)
    return f"; did you mean {prefix}...?" if ratio >= 0.8 else ""


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


def resolve_backends(
    file_value: Raw | None, environ: Mapping[str, str]
) -> tuple[frozenset[str], str]:
    """``AWOPS_BACKENDS``, else ActingWeb's ``DATABASE_BACKEND``, else the file's, else
    ActingWeb's default; with where the choice came from (``environment
    DATABASE_BACKEND=postgresql``, ``/etc/awops/awops.toml: backends`` or
    :data:`DEFAULT_BACKENDS_ORIGIN`)."""
    expected = "a list of backends from " + ", ".join(BACKENDS)
    for variable in ("AWOPS_BACKENDS", "DATABASE_BACKEND"):
        if environ.get(variable):
            origin = f"environment {variable}"
            raw = Raw(_utf8(environ[variable], origin), origin, from_env=True)
            break
    else:
        if file_value is None:
            return frozenset({ACTINGWEB_DEFAULT_BACKEND}), DEFAULT_BACKENDS_ORIGIN
        raw = file_value
    if isinstance(raw.value, str):
        items: Any = [part.strip().lower() for part in raw.value.split(",") if part.strip()]
    else:
        items = raw.value
    if not isinstance(items, list) or not items or any(item not in BACKENDS for item in items):
        raise ConfigError(raw.origin, expected, raw.value)
    origin = f"{raw.origin}={raw.value}" if raw.from_env else raw.origin
    return frozenset(items), origin

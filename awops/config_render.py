"""The configuration as people read it: ``awops config`` (TOML) and its warnings.

Secrets are never printed, and a line that holds one (masked) is a comment saying where to put
the secret: ``awops config > awops.toml`` gives a file that loads, and never one that would send
``********`` to a server as a password (loading refuses the mask as a secret's value, too).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import partial
from typing import TYPE_CHECKING, Any

from awops.config import SECTIONS, Config
from awops.config_sources import ENV_ALIASES
from awops.logs import MASK
from awops.result import Status
from awops.settings import mask_url_password, secret_fields

if TYPE_CHECKING:
    from awops.registry import JobRegistry


def section_variables(section: str, key: str) -> list[str]:
    """The environment variables that set ``[section] key``: ActingWeb's names first."""
    generic = f"AWOPS_{section.upper()}_{key.upper()}"
    aliases = [name for name, target in ENV_ALIASES.items() if target == (section, key)]
    return aliases if generic in aliases else [*aliases, generic]


def job_variable(job: str, key: str) -> str:
    """The environment variable that sets ``[jobs.<job>] key``."""
    return f"AWOPS_JOB_{job.upper().replace('-', '_')}_{key.upper()}"


def config_warnings(config: Config, registry: JobRegistry) -> list[str]:
    """What is valid but will fail: an active job whose runs report ``error`` because a key it
    needs is not set (pg-backup without a target)."""
    warnings = []
    for job_class in registry:
        if not config.job_is_active(job_class.name, job_class.backend):
            continue
        if job_class.unconfigured_status is not Status.ERROR:
            continue
        reason = job_class.unconfigured_reason(config.jobs[job_class.name].options, config)
        if reason is not None:
            warnings.append(
                f"{job_class.name}: {reason}, so every run reports error; "
                f"{job_class.configure_hint}"
            )
    return warnings


def render_config(config: Config, warnings: Sequence[str] = ()) -> str:
    """The effective configuration as TOML that loads again; secrets left out, with a comment
    saying where to set each."""
    lines = [f"# effective configuration (file: {config.source})"]
    lines += [f"# warning: {warning}" for warning in warnings]
    lines.append(f"backends = {toml_value(sorted(config.backends))}  # {config.backends_origin}")
    for name in SECTIONS:
        lines += ["", f"[{name}]"]
        lines += _render_fields(getattr(config, name), partial(_section_variable, name))
    for job_name, job in config.jobs.items():
        variable = partial(job_variable, job_name)
        lines += ["", f"[jobs.{job_name}]"]
        lines.append(f"enabled = {toml_value(job.enabled)}")
        lines.append(f"schedule = {toml_value(job.schedule.text)}")
        lines.append(f"timeout_seconds = {toml_value(job.timeout_seconds)}")
        lines.append(f"jitter_seconds = {toml_value(job.jitter_seconds)}")
        if job.ping_url:
            lines.append(_secret_line("ping_url", variable("ping_url")))
        else:
            lines.append('ping_url = ""')
        lines += _render_fields(job.options, variable)
    return "\n".join(lines) + "\n"


def _section_variable(section: str, key: str) -> str:
    return section_variables(section, key)[0]


def _render_fields(section: Any, variable: Callable[[str], str]) -> list[str]:
    secrets = secret_fields(type(section))
    rendered = []
    for item in fields(section):
        value = getattr(section, item.name)
        if item.name in secrets and value:
            rendered.append(_secret_line(item.name, variable(item.name)))
            continue
        texts = value if isinstance(value, list) else [value]
        masked = [mask_url_password(v) if isinstance(v, str) else v for v in texts]
        line = f"{item.name} = {toml_value(masked if isinstance(value, list) else masked[0])}"
        if masked != texts:  # a URL with a password in it
            line = (
                f"# {line}  (holds a secret, not printed: write the line with it, "
                f"or set {variable(item.name)})"
            )
        rendered.append(line)
    return rendered


def _secret_line(key: str, variable: str) -> str:
    return f'# {key} = "{MASK}"  (a secret, not printed: write it here, or set {variable})'


def toml_value(value: Any) -> str:
    """``value`` as a TOML value: booleans, numbers, strings and lists of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    # A JSON string is a TOML basic string: quotes, backslashes and control characters escaped.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")

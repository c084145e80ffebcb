"""Typed settings sections and the generic validator that builds them from raw values.

Every section is a dataclass whose fields carry defaults and, in ``metadata``, how a value is
checked. A job's own options are dataclasses of the same kind, so one validator serves all.
They are treated as read-only but not declared ``frozen``: on Python 3.11 a frozen dataclass
costs twice as much to define, and ``awops run-once`` defines them all at every start.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from awops.errors import ConfigError
from awops.logs import MASK

T = TypeVar("T")

_PG_IDENTIFIER_MAX_BYTES = 63
_DYNAMODB_NAME = re.compile(r"^[A-Za-z0-9_.-]*$")

# Upper bounds for every number a field does not bound itself, so no value can overflow a
# datetime, a timedelta, a thread's wait or APScheduler later: it is refused at load time.
MAX_DURATION_SECONDS = 10 * 365 * 86400
# PostgreSQL takes its timeouts in milliseconds as a 32-bit integer.
MAX_DURATION_MS = 2**31 - 1
MAX_PG_TIMEOUT_SECONDS = MAX_DURATION_MS // 1000  # for *_seconds settings PostgreSQL gets
MAX_DURATION_DAYS = 10 * 365
# Any other count or size: exact in a float and within PostgreSQL's BIGINT.
MAX_NUMBER = 2**53
_UNIT_MAXIMUM: tuple[tuple[str, float, str], ...] = (
    ("_seconds", MAX_DURATION_SECONDS, "ten years"),
    ("_ms", MAX_DURATION_MS, "PostgreSQL's limit, about 24 days"),
    ("_days", MAX_DURATION_DAYS, "ten years"),
)


@dataclass
class Raw:
    """A value as read, with where it was read from (for error messages)."""

    value: Any
    origin: str
    from_env: bool = False


def setting(
    default: Any,
    *,
    doc: str = "",
    secret: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field with the metadata the validator reads.

    ``check`` returns None for a good value or a description of what is expected.
    """
    metadata = {
        "doc": doc,
        "secret": secret,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "check": check,
    }
    if isinstance(default, list):
        frozen = tuple(default)
        return field(default_factory=lambda: list(frozen), metadata=metadata)
    return field(default=default, metadata=metadata)


def pg_identifier(value: Any) -> str | None:
    """PostgreSQL identifiers are quoted, so only emptiness, length and NUL can be wrong."""
    if not isinstance(value, str) or not value:
        return "a non-empty PostgreSQL identifier"
    if "\x00" in value or len(value.encode()) > _PG_IDENTIFIER_MAX_BYTES:
        return "a PostgreSQL identifier of at most 63 bytes without NUL"
    return None


def pg_identifier_list(value: Any) -> str | None:
    for item in value:
        if pg_identifier(item) is not None:
            return "a list of PostgreSQL identifiers (non-empty, at most 63 bytes each)"
    return None


def dynamodb_name_part(value: Any) -> str | None:
    if not isinstance(value, str) or not _DYNAMODB_NAME.match(value) or len(value) > 200:
        return "letters, digits, '_', '-' or '.' (DynamoDB table name characters)"
    return None


def dynamodb_name_list(value: Any) -> str | None:
    for item in value:
        if not item or dynamodb_name_part(item) is not None:
            return "a list of DynamoDB table name suffixes (letters, digits, '_', '-', '.')"
    return None


def bounded(name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with the default bounds of a number named ``name`` where it sets none:
    ten years for ``*_seconds`` and ``*_days``, PostgreSQL's limit for ``*_ms``, and
    :data:`MAX_NUMBER` either way for anything else."""
    limits = dict(metadata)
    if limits.get("maximum") is None:
        limits["maximum"], limits["maximum_note"] = MAX_NUMBER, ""
        for suffix, maximum, note in _UNIT_MAXIMUM:
            if name.endswith(suffix):
                limits["maximum"], limits["maximum_note"] = maximum, note
    if limits.get("minimum") is None:
        limits["minimum"] = -MAX_NUMBER
    return limits


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the known word closest to ``word``, else ``""``."""
    import difflib  # only on an error: start-up does not pay for it

    candidates = list(known)
    folded = {candidate.casefold(): candidate for candidate in candidates}
    if word.casefold() in folded:
        return f"; did you mean {folded[word.casefold()]!r}?"
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(origin: str, where: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for ``key``, not one of ``known`` in ``[where]``: every known key, and the
    closest one."""
    names = sorted(known)
    listed = ", ".join(names) or "no keys"
    return ConfigError(origin, f"one of the keys of [{where}] ({listed}){did_you_mean(key, names)}")


def build_section(
    cls: type[T], raw: Mapping[str, Raw], where: str, other_keys: Iterable[str] = ()
) -> T:
    """Build dataclass ``cls`` from ``raw``; ``where`` names the section for unknown keys, and
    ``other_keys`` are the section's keys handled elsewhere (a job's ``enabled``, ``schedule``
    ...), listed and suggested with the dataclass's own."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, raw_value in raw.items():
        if key not in fields:
            raise unknown_key(raw_value.origin, where, key, [*fields, *other_keys])
        metadata: Mapping[str, Any] = fields[key].metadata
        if hints[key] in (int, float):
            metadata = bounded(key, metadata)
        values[key] = convert(raw_value, hints[key], metadata)
    return cls(**values)


def convert(raw: Raw, hint: Any, metadata: Mapping[str, Any]) -> Any:
    """Coerce and check one value against its type hint and field metadata.

    A secret's value is never echoed in the error: a bad password is still a password. The
    mask ``awops config`` prints in place of a secret is refused, so a printed configuration
    saved as a file never sends ``********`` to a server as the password.
    """
    if metadata.get("secret"):
        try:
            return _convert(raw, hint, metadata)
        except ConfigError as exc:
            raise ConfigError(exc.origin, exc.expected) from None
    return _convert(raw, hint, metadata)


MASKED_EXPECTED = (
    f"the real secret, not {MASK}, the mask `awops config` prints in its place: "
    "set the secret itself here (or leave the key out)"
)


def holds_mask(value: Any, secret: bool) -> bool:
    """Whether ``value`` is the mask of a secret: the whole value of a secret setting, or the
    password of a URL with credentials in any string setting."""
    for text in value if isinstance(value, list) else [value]:
        if not isinstance(text, str):
            continue
        if (secret and text == MASK) or MASK in url_passwords(text):
            return True
    return False


def _convert(raw: Raw, hint: Any, metadata: Mapping[str, Any]) -> Any:
    value = _coerce(raw, hint)
    if holds_mask(value, bool(metadata.get("secret"))):
        raise ConfigError(raw.origin, MASKED_EXPECTED)
    minimum, maximum = metadata.get("minimum"), metadata.get("maximum")
    if minimum is not None and value < minimum:
        expected = f"{_type_name(hint)} of at least {_number(minimum)}"
        raise ConfigError(raw.origin, expected, raw.value)
    if maximum is not None and value > maximum:
        expected = f"{_type_name(hint)} of at most {_number(maximum)}"
        if metadata.get("maximum_note"):
            expected += f" ({metadata['maximum_note']})"
        raise ConfigError(raw.origin, expected, raw.value)
    choices = metadata.get("choices")
    if choices and value not in choices:
        # No choice differs from another only in case, so "debug" can only mean DEBUG.
        same = [c for c in choices if isinstance(value, str) and c.casefold() == value.casefold()]
        if len(same) != 1:
            expected = "one of " + ", ".join(repr(c) for c in choices)
            raise ConfigError(raw.origin, expected, raw.value)
        value = same[0]
    check = metadata.get("check")
    if check is not None:
        expected = check(value)
        if expected is not None:
            raise ConfigError(raw.origin, expected, raw.value)
    return value


def _coerce(raw: Raw, hint: Any) -> Any:
    value = raw.value
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if raw.from_env and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ConfigError(raw.origin, _type_name(hint), raw.value)
        return [_coerce(Raw(item, raw.origin, raw.from_env), item_hint) for item in value]
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"optional settings are not supported: {hint}")
    if hint is bool:
        if raw.from_env and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
    elif hint is int:
        if raw.from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = _float(value, raw.from_env)
        if number is not None:
            # nan compares false with every bound and inf overflows what it reaches.
            if not math.isfinite(number):
                raise ConfigError(raw.origin, "a finite number", raw.value)
            return number
    elif hint is str:
        if isinstance(value, str):
            # C libraries (libpq among them) stop at a NUL: "host\0x" would reach "host".
            if "\x00" in value:
                raise ConfigError(raw.origin, "a string without NUL characters", raw.value)
            return value
    else:
        raise TypeError(f"unsupported setting type {hint}")
    raise ConfigError(raw.origin, _type_name(hint), raw.value)


def _float(value: Any, from_env: bool) -> float | None:
    """``value`` as a float (inf beyond any float), or None when it is not a number."""
    try:
        if from_env and isinstance(value, str):
            return float(value.strip())
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    except ValueError:
        return None
    except OverflowError:  # a whole number beyond any float
        return math.inf
    return None


def _number(value: float) -> str:
    """A bound as written: 315360000, not 3.1536e+08."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        (item_hint,) = typing.get_args(hint)
        return f"a list of {_type_name(item_hint).removeprefix('a ')}s"
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
    }.get(hint, str(hint))


def secret_fields(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("secret")}


def secret_values(section: Any) -> list[str]:
    """Every secret of a settings section: its secret fields, and the password of any URL
    with credentials in its other strings (``s3://KEY:SECRET@bucket/prefix``)."""
    secret = secret_fields(type(section))
    found: list[str] = []
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str) or not text:
                continue
            if item.name in secret:
                found.append(text)
            found += url_passwords(text)
    return found


def url_passwords(text: str) -> list[str]:
    """The password of a URL with credentials, as written and percent-decoded, else []."""
    if "@" not in text:
        return []
    try:
        password = urlsplit(text).password
    except ValueError:  # not a URL after all (an unbalanced "[")
        return []
    return sorted({password, unquote(password)}) if password else []


def mask_url_password(text: str) -> str:
    """``text`` with the password of a URL with credentials masked: s3://KEY:********@b/p."""
    if not url_passwords(text):
        return text
    netloc = urlsplit(text).netloc
    userinfo, _, host = netloc.rpartition("@")
    start = text.index(netloc, text.index("//"))
    masked = f"{userinfo.partition(':')[0]}:********@{host}"
    return text[:start] + masked + text[start + len(netloc) :]

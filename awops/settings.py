"""Typed settings sections and the generic validator that builds them from raw values.

Every section is a dataclass whose fields carry defaults and, in ``metadata``, how a value is
checked. A job's own options are dataclasses of the same kind, so one validator serves all.
They are treated as read-only but not declared ``frozen``: on Python 3.11 a frozen dataclass
costs twice as much to define, and ``awops run-once`` defines them all at every start.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from awops.errors import ConfigError

T = TypeVar("T")

_PG_IDENTIFIER_MAX_BYTES = 63
_DYNAMODB_NAME = re.compile(r"^[A-Za-z0-9_.-]*$")


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


def build_section(cls: type[T], raw: Mapping[str, Raw], where: str) -> T:
    """Build dataclass ``cls`` from ``raw``; ``where`` names the section for unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, raw_value in raw.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "no keys"
            raise ConfigError(raw_value.origin, f"one of the keys of [{where}] ({known})")
        values[key] = convert(raw_value, hints[key], fields[key].metadata)
    return cls(**values)


def convert(raw: Raw, hint: Any, metadata: Mapping[str, Any]) -> Any:
    """Coerce and check one value against its type hint and field metadata.

    A secret's value is never echoed in the error: a bad password is still a password.
    """
    if metadata.get("secret"):
        try:
            return _convert(raw, hint, metadata)
        except ConfigError as exc:
            raise ConfigError(exc.origin, exc.expected) from None
    return _convert(raw, hint, metadata)


def _convert(raw: Raw, hint: Any, metadata: Mapping[str, Any]) -> Any:
    value = _coerce(raw, hint)
    minimum, maximum = metadata.get("minimum"), metadata.get("maximum")
    if minimum is not None and value < minimum:
        raise ConfigError(raw.origin, f"{_type_name(hint)} of at least {minimum:g}", raw.value)
    if maximum is not None and value > maximum:
        raise ConfigError(raw.origin, f"{_type_name(hint)} of at most {maximum:g}", raw.value)
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
        if raw.from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported setting type {hint}")
    raise ConfigError(raw.origin, _type_name(hint), raw.value)


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

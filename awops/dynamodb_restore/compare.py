"""Two tables' settings side by side: what a restore must have reproduced, row by row.

A row matches when the restored table has what the source has. An unknown source value (the
source is gone and its backup does not say) never matches: the operator must look at it.
TTL and PITR count ENABLING as enabled: AWS takes a while (TTL up to an hour) to finish.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from awops.dynamodb_restore.snapshot import Index, TableSettings

UNKNOWN = "unknown"


@dataclass
class Comparison:
    setting: str
    source: str
    restored: str
    match: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _keys(keys: tuple[str | None, str | None]) -> str:
    hash_key, range_key = keys
    return f"{hash_key}" + (f" + {range_key}" if range_key else "")


def _index(index: Index | None) -> str:
    return index.summary() if index is not None else "missing"


def _tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "none"


def _row(setting: str, source: str, restored: str, match: bool | None = None) -> Comparison:
    if match is None:
        match = source == restored
    return Comparison(setting, source, restored, match and source != UNKNOWN)


def compare_settings(source: TableSettings, restored: TableSettings) -> list[Comparison]:
    """One :class:`Comparison` per setting, GSI and key schema included."""
    rows = [_row("key schema", _keys(source.key_schema), _keys(restored.key_schema))]
    rows.append(_row("gsis", _names(source.gsis), _names(restored.gsis)))
    for name in sorted(set(source.gsis) | set(restored.gsis)):
        rows.append(
            _row(f"gsi {name}", _index(source.gsis.get(name)), _index(restored.gsis.get(name)))
        )
    for name in sorted(set(source.lsis) | set(restored.lsis)):
        rows.append(
            _row(f"lsi {name}", _index(source.lsis.get(name)), _index(restored.lsis.get(name)))
        )
    rows.append(_row("billing mode", source.billing_mode, restored.billing_mode))
    if source.throughput or restored.throughput:
        rows.append(
            _row(
                "capacity",
                _units(source.throughput),
                _units(restored.throughput),
            )
        )
    rows.append(_row("ttl", _summary(source.ttl), _summary(restored.ttl)))
    pitr_match = _pitr_match(source, restored)
    rows.append(_row("pitr", _summary(source.pitr), _summary(restored.pitr), pitr_match))
    rows.append(
        _row(
            "tags",
            _tags(source.tags) if source.tags is not None else UNKNOWN,
            _tags(restored.tags) if restored.tags is not None else UNKNOWN,
        )
    )
    rows.append(_row("stream", _summary(source.stream), _summary(restored.stream)))
    rows.append(
        _row(
            "deletion protection",
            _flag(source.deletion_protection),
            _flag(restored.deletion_protection),
        )
    )
    rows.append(_row("autoscaling", _summary(source.autoscaling), _summary(restored.autoscaling)))
    return rows


def _names(indexes: dict[str, Index]) -> str:
    return ", ".join(sorted(indexes)) or "none"


def _summary(value: Any) -> str:
    return UNKNOWN if value is None else str(value.summary())


def _flag(value: bool | None) -> str:
    return UNKNOWN if value is None else ("on" if value else "off")


def _units(throughput: tuple[int, int] | None) -> str:
    return f"{throughput[0]}/{throughput[1]} units" if throughput else "on demand"


def _pitr_match(source: TableSettings, restored: TableSettings) -> bool:
    """PITR matches when both agree on on/off and, if the source names one, on the period."""
    if source.pitr is None or restored.pitr is None:
        return False
    if source.pitr.enabled != restored.pitr.enabled:
        return False
    wanted = source.pitr.recovery_period_days
    return not source.pitr.enabled or wanted is None or wanted == restored.pitr.recovery_period_days

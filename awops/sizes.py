"""Byte counts as people read them, for the command line's tables and the status page."""

from __future__ import annotations

from collections.abc import Sequence

BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB")


def size_text(size_bytes: float, step: int = 1024, units: Sequence[str] = BINARY_UNITS) -> str:
    """``size_bytes`` in the first of ``units`` (each ``step`` times the one before) that keeps
    it under ``step``, else in the last: whole bytes, other units to one decimal."""
    size = float(size_bytes)
    for unit in units[:-1]:
        if size < step:
            return f"{size:.0f} {unit}" if unit == units[0] else f"{size:.1f} {unit}"
        size /= step
    return f"{size:.1f} {units[-1]}"

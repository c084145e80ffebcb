"""Plain-text tables for people: the CLI's listings and the DynamoDB backups list."""

from __future__ import annotations


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A short aligned table; the last column is left unpadded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)

"""Pieces of :mod:`awops.backup` that are private there and that the restore shares.

A restore must read versions and list tables exactly as pg-backup does, so it uses the same
pattern and the same query rather than copies. They are private in their modules; this is the
one place that names them, until they are made public there.
"""

from __future__ import annotations

import re

from awops.backup.dump import _VERSION
from awops.backup.rows import _TABLES

# The major (and minor) version in ``pg_dump --version`` / ``pg_restore --version`` text.
CLIENT_VERSION_PATTERN: re.Pattern[str] = _VERSION
# ``(schema, table)`` of every table whose rows pg-backup counts into the manifest.
COUNTED_TABLES_QUERY: str = _TABLES

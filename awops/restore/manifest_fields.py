"""The manifest fields a restore checks beyond row counts, read without trusting them.

``alembic_revision`` (the ActingWeb schema's Alembic revision, "" when it has none),
``actingweb_tables`` (ActingWeb's tables the database held) and ``globals`` (the backup's
roles object: ``{"file", "size_bytes", "sha256", "status", "reason"}``) were added to the
manifest after its first format: a manifest of an older awops lacks them, and then the
restore says the check was not possible rather than failing. The values are taken from the
:class:`~awops.backup.manifest.Manifest` when it carries them, else from the manifest's JSON,
and checked either way; a value of the wrong kind names the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from awops.backup.manifest import Manifest, ManifestError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
GLOBALS_STATUSES = ("ok", "skipped")


@dataclass(frozen=True)
class GlobalsObject:
    """The backup's roles (``pg_dumpall --globals-only --no-role-passwords``) object."""

    file: str
    size_bytes: int
    sha256: str
    status: str  # "ok" or "skipped"
    reason: str = ""

    @property
    def encrypted(self) -> bool:
        return self.file.endswith(".age")


@dataclass(frozen=True)
class ManifestFacts:
    """What the manifest records of the schema and roles; None = not recorded."""

    alembic_revision: str | None = None
    actingweb_tables: tuple[str, ...] | None = None
    globals: GlobalsObject | None = None


FIELDS = ("alembic_revision", "actingweb_tables", "globals")


def read_facts(manifest: Manifest, raw: Callable[[], bytes], where: str) -> ManifestFacts:
    """The facts of ``manifest``, read from ``where``; ``raw`` returns its JSON, asked for
    only when the Manifest does not carry these fields itself."""
    document: dict[str, Any] = {}
    if not all(hasattr(manifest, name) for name in FIELDS):
        try:
            loaded = json.loads(raw())
            if isinstance(loaded, dict):
                document = loaded
        except ValueError:
            pass  # Manifest.from_json read it already; a re-read that fails adds nothing

    def value(name: str) -> Any:
        if hasattr(manifest, name):
            found = getattr(manifest, name)
            if dataclasses.is_dataclass(found) and not isinstance(found, type):
                return dataclasses.asdict(found)
            return found
        return document.get(name)

    revision = value("alembic_revision")
    if revision is not None and not isinstance(revision, str):
        raise ManifestError(f"manifest {where}: field 'alembic_revision': expected a string")
    tables = value("actingweb_tables")
    if tables is not None and not (
        isinstance(tables, list | tuple) and all(isinstance(t, str) for t in tables)
    ):
        raise ManifestError(
            f"manifest {where}: field 'actingweb_tables': expected an array of strings"
        )
    roles = _globals(value("globals"), manifest.backup, where)
    if getattr(manifest, "records_actingweb", None) is False:
        # A Manifest that carries the fields with their defaults says whether the backup
        # recorded them: one that did not holds "" and [], which mean nothing; its roles
        # entry says "not recorded" itself.
        revision = tables = None
    return ManifestFacts(
        alembic_revision=revision,
        actingweb_tables=tuple(tables) if tables is not None else None,
        globals=roles,
    )


def _globals(entry: Any, backup: str, where: str) -> GlobalsObject | None:
    if entry is None:
        return None
    expected = 'an object {"file", "size_bytes", "sha256", "status": "ok" or "skipped", "reason"}'
    if not isinstance(entry, dict):
        raise ManifestError(f"manifest {where}: field 'globals': expected {expected}")
    status = entry.get("status")
    reason = entry.get("reason") or ""
    if status not in GLOBALS_STATUSES or not isinstance(reason, str):
        raise ManifestError(f"manifest {where}: field 'globals': expected {expected}")
    if status == "skipped":
        return GlobalsObject("", 0, "", "skipped", reason)
    file, size, sha256 = entry.get("file"), entry.get("size_bytes"), entry.get("sha256")
    names = (f"{backup}.globals.sql", f"{backup}.globals.sql.age")
    if file not in names:
        raise ManifestError(
            f"manifest {where}: field 'globals.file': expected {names[0]} or {names[1]}"
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"manifest {where}: field 'globals.size_bytes': expected a count")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ManifestError(f"manifest {where}: field 'globals.sha256': expected 64 hex digits")
    return GlobalsObject(file, size, sha256, "ok", reason)

"""How backups are named on a target.

A backup is two objects side by side: the dump (``<database>-<UTC time>.dump``, ``.dump.age``
when encrypted) and its manifest (``<database>-<UTC time>.manifest.json``). The time is the
database server's when the dump's snapshot was taken. Beside them, with the same id:

- ``<id>.globals.sql`` (``.globals.sql.age`` when encrypted): the cluster's roles and
  memberships, ``pg_dumpall --globals-only --no-role-passwords``; the manifest's ``globals``
  describes it;
- ``<id>.verify.json``: the result of the last ``pg-backup-verify`` of this backup
  (:mod:`awops.backup.records`);
- ``<id>.pin``: the backup is pinned, retention never deletes it (:mod:`awops.backup.records`).

PostgreSQL allows any character but NUL in a database name, ``/`` and ``..`` included, so the
name is encoded before it becomes part of a file name or object key: letters, digits, ``_``,
``-`` and ``.`` stay as they are (a leading ``.`` excepted, which would hide the file), every
other character becomes ``%XX`` per UTF-8 byte. No encoded name holds a ``/``: a backup lands
in its target's directory, or right under its S3 prefix, whatever the database is called.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from urllib.parse import unquote

MANIFEST_SUFFIX = ".manifest.json"
DUMP_SUFFIX = ".dump"
ENCRYPTED_DUMP_SUFFIX = ".dump.age"
GLOBALS_SUFFIX = ".globals.sql"
ENCRYPTED_GLOBALS_SUFFIX = ".globals.sql.age"
VERIFY_RECORD_SUFFIX = ".verify.json"
PIN_SUFFIX = ".pin"
_STAMP = "%Y%m%dT%H%M%S"
_NAME = re.compile(r"^(?P<database>.+)-(?P<stamp>\d{8}T\d{6})\.(?P<millis>\d{3})Z$")
_KEPT = frozenset(string.ascii_letters + string.digits + "_-.")


def database_key(database: str) -> str:
    """``database`` as file names and object keys hold it (see the module's docstring)."""
    encoded = []
    for position, char in enumerate(database):
        if char in _KEPT and not (position == 0 and char == "."):
            encoded.append(char)
        else:
            encoded += [f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")]
    return "".join(encoded)


def _database_of_key(key: str) -> str | None:
    """The database name ``key`` encodes, or None when awops would not have written ``key``."""
    try:
        database = unquote(key, errors="surrogatepass")
    except UnicodeDecodeError:
        return None
    return database if database and database_key(database) == key else None


def backup_prefix(database: str) -> str:
    """What the name of every object of ``database``'s backups starts with."""
    return database_key(database) + "-"


def backup_id(database: str, created: float) -> str:
    """``actingweb-20261201T030000.123Z``: sorts by time, readable, unique per millisecond."""
    moment = datetime.fromtimestamp(created, UTC)
    return f"{database_key(database)}-{moment.strftime(_STAMP)}.{moment.microsecond // 1000:03d}Z"


def parse_backup_id(name: str) -> tuple[str, float] | None:
    """``(database, time in the name)`` of a backup id, or None when ``name`` is not one."""
    match = _NAME.match(name)
    if match is None:
        return None
    database = _database_of_key(match["database"])
    if database is None:
        return None
    try:
        moment = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None  # 20261399T...: digits in the right places, but no time
    return database, moment.timestamp() + int(match["millis"]) / 1000


def dump_name(backup: str, encrypted: bool) -> str:
    return backup + (ENCRYPTED_DUMP_SUFFIX if encrypted else DUMP_SUFFIX)


def backup_of_dump(name: str) -> str | None:
    """The backup id a dump file belongs to, or None when ``name`` is not a dump's."""
    for suffix in (DUMP_SUFFIX, ENCRYPTED_DUMP_SUFFIX):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return None


def manifest_name(backup: str) -> str:
    return backup + MANIFEST_SUFFIX


def globals_name(backup: str, encrypted: bool) -> str:
    """The roles object of ``backup``: ``<id>.globals.sql``, ``.globals.sql.age`` encrypted."""
    return backup + (ENCRYPTED_GLOBALS_SUFFIX if encrypted else GLOBALS_SUFFIX)


def verify_record_name(backup: str) -> str:
    """Where ``pg-backup-verify`` records its result for ``backup``: ``<id>.verify.json``."""
    return backup + VERIFY_RECORD_SUFFIX


def pin_name(backup: str) -> str:
    """The marker that pins ``backup``: ``<id>.pin``."""
    return backup + PIN_SUFFIX


def backup_of_object(name: str) -> str | None:
    """The backup id any object of a backup belongs to (dump, manifest, globals, verify
    record, pin), or None when ``name`` is none of them."""
    for suffix in (
        ENCRYPTED_DUMP_SUFFIX,
        DUMP_SUFFIX,
        MANIFEST_SUFFIX,
        ENCRYPTED_GLOBALS_SUFFIX,
        GLOBALS_SUFFIX,
        VERIFY_RECORD_SUFFIX,
        PIN_SUFFIX,
    ):
        if name.endswith(suffix):
            backup = name.removesuffix(suffix)
            return backup if parse_backup_id(backup) is not None else None
    return None

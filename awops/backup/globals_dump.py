"""The cluster's roles and memberships, saved beside the dump: ``pg_dumpall --globals-only``.

``--no-role-passwords`` keeps password hashes out of the backup and lets the dump read
``pg_roles`` instead of ``pg_authid``, which managed servers (RDS, Cloud SQL, Azure) do not let
their users read. A server that still refuses (a catalog it does not let the backup role read,
a pg_dumpall older than the server) makes the object ``skipped`` with pg_dumpall's message as
the reason: the backup itself goes on. pg_dumpall connects to the backed-up database, the one
awops is known to reach, not to ``postgres``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from awops.backup.dump import DumpError, client_environment, run_client
from awops.backup.encryption import AgeEncryptor
from awops.backup.manifest import Globals
from awops.backup.names import globals_name

logger = logging.getLogger(__name__)

_REASON_MAX_CHARS = 500


@dataclass
class GlobalsDump:
    """The stored bytes (encrypted when the backup is) and what the manifest says of them."""

    data: bytes
    globals: Globals


def pg_dumpall_program(pg_dump: str) -> str | None:
    """pg_dumpall of the same installation as ``pg_dump`` (its directory), else on PATH."""
    sibling = Path(pg_dump).with_name("pg_dumpall")
    if sibling.is_file():
        return str(sibling)
    return shutil.which("pg_dumpall")


def conninfo_dbname(database: str) -> str:
    """``dbname='...'``: pg_dumpall expands a database name holding ``=`` as a connection
    string; quoted this way, every name is just the name."""
    return "dbname='" + database.replace("\\", "\\\\").replace("'", "\\'") + "'"


def skipped(reason: str) -> GlobalsDump:
    return GlobalsDump(b"", Globals(status="skipped", reason=reason))


def dump_globals(
    program: str | None,
    database: str,
    libpq_environment: Mapping[str, str],
    on_cancel: Callable[[Callable[[], None]], None],
    backup: str,
    encryptor: AgeEncryptor | None,
) -> GlobalsDump:
    """Run pg_dumpall for the roles; ``skipped`` with the reason when it cannot."""
    if program is None:
        return skipped("pg_dumpall not found beside pg_dump nor on PATH")
    env = client_environment(libpq_environment)
    # UTF-8 whatever the server's encoding, so the text survives decoding unchanged.
    env["PGCLIENTENCODING"] = "UTF8"
    command = [
        program,
        "--globals-only",
        "--no-role-passwords",
        "--no-password",
        f"--database={conninfo_dbname(database)}",
    ]
    try:
        text = run_client(command, env, on_cancel, "pg_dumpall --globals-only")
    except DumpError as exc:
        reason = str(exc)[:_REASON_MAX_CHARS]
        logger.warning("roles not saved with the backup: %s", reason)
        return skipped(reason)
    plain = text.encode("utf-8")
    if encryptor is not None:
        data = encryptor.header() + encryptor.update(plain) + encryptor.finish()
    else:
        data = plain
    return GlobalsDump(
        data,
        Globals(
            file=globals_name(backup, encrypted=encryptor is not None),
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            status="ok",
            reason="",
        ),
    )

"""Restoring backups into a database an operator names: ``awops restore postgresql``.

A restore never writes into a database that exists and holds a table unless ``--replace``
repeats that database's name; every check that can refuse (the backup, its sha256, the
client's version, the roles object) runs before the target database is touched, and a
database the restore created is dropped again when it fails or is interrupted.
"""

from awops.restore.request import (
    LATEST,
    RestoreError,
    RestoreInterrupted,
    RestoreRefused,
    RestoreRequest,
    RestoreUsageError,
)

__all__ = [
    "LATEST",
    "RestoreError",
    "RestoreInterrupted",
    "RestoreRefused",
    "RestoreRequest",
    "RestoreUsageError",
]

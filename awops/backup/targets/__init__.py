"""Where backups live: a local directory or an S3 prefix, behind one small interface.

:class:`Target` (in ``base``) states what every kind of target does; ``local`` and ``s3``
implement it, and only the kind a URL names is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from awops.backup.target_url import TargetUrlError, display_url, parse_target_url
from awops.backup.targets.base import StoredBackup, Target, TargetError, Writer

if TYPE_CHECKING:
    from awops.aws import AwsClients
    from awops.config import BackupSettings

__all__ = [
    "StoredBackup",
    "Target",
    "TargetError",
    "Writer",
    "configured_targets",
    "display_url",
    "open_target",
]


def open_target(url: str, aws: AwsClients | None, settings: BackupSettings | None = None) -> Target:
    """The target ``url`` names (a URL the configuration accepted); S3 with the options of
    ``settings`` ([backup])."""
    try:
        where = parse_target_url(url)
    except TargetUrlError as exc:
        raise TargetError(str(exc)) from None
    if where.scheme == "s3":
        # One module per kind of target, imported when named: only S3 loads botocore.
        from awops.backup.targets.s3 import S3Target, s3_options

        if aws is None:
            raise TargetError(f"{where.display}: S3 targets need AWS clients")
        credentials = (where.access_key_id, where.secret_access_key)
        return S3Target(where.bucket, where.prefix, aws, s3_options(settings), credentials)
    from awops.backup.targets.local import LocalTarget

    return LocalTarget(Path(where.path))


def configured_targets(settings: BackupSettings, aws: AwsClients) -> list[Target]:
    """Every target of ``[backup] targets``."""
    return [open_target(target, aws, settings) for target in settings.targets]

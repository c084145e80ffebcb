"""The series of the ``pgbackrest`` and ``pgbackrest-restore-verify`` jobs, declared once.

Each constant is ``(name, help, labels)``, recorded with ``metrics.gauge(*CONSTANT)``. The
shared ``awops_backup_*`` series are fed too, so the backup alerts cover pgBackRest:
``target`` is ``<stanza>/repo<N>`` for backups and ``<stanza>`` for restore tests.
"""

from __future__ import annotations

Series = tuple[str, str, tuple[str, ...]]

# pgbackrest (the check of the engine)
STANZA_OK: Series = (
    "awops_pgbackrest_stanza_ok",
    "1 when pgbackrest info reports the stanza ok (status code 0)",
    ("stanza",),
)
STANZA_STATUS_CODE: Series = (
    "awops_pgbackrest_stanza_status_code",
    "pgBackRest's status code of the stanza (0 ok, 1 missing stanza path, 2 no valid backups, "
    "3 missing stanza data, 4 different across repos, 5 database mismatch, 99 other)",
    ("stanza",),
)
REPO_OK: Series = (
    "awops_pgbackrest_repo_ok",
    "1 when pgbackrest info reports the repository ok",
    ("stanza", "repo"),
)
LAST_BACKUP_TIMESTAMP: Series = (
    "awops_pgbackrest_last_backup_timestamp_seconds",
    "When the newest backup of this type finished (pgBackRest's stop time)",
    ("stanza", "repo", "type"),
)
BACKUP_SIZE: Series = (
    "awops_pgbackrest_backup_size_bytes",
    "Database size as of the newest backup of this type",
    ("stanza", "repo", "type"),
)
BACKUP_REPOSITORY_SIZE: Series = (
    "awops_pgbackrest_backup_repository_bytes",
    "What the newest backup of this type added to the repository (compressed)",
    ("stanza", "repo", "type"),
)
BACKUPS: Series = (
    "awops_pgbackrest_backups",
    "Backup sets in the repository, by type",
    ("stanza", "repo", "type"),
)
ARCHIVE_GAP: Series = (
    "awops_pgbackrest_archive_gap",
    "1 when WAL segments are missing from the archive between the newest backup's start and "
    "the newest archived segment",
    ("stanza", "repo"),
)
ARCHIVE_MISSING_SEGMENTS: Series = (
    "awops_pgbackrest_archive_missing_segments",
    "WAL segments missing from the archive after the newest backup's start",
    ("stanza", "repo"),
)
ARCHIVE_SEGMENTS_AFTER_BACKUP: Series = (
    "awops_pgbackrest_archive_segments_since_backup",
    "WAL segments from the newest backup's start to the newest archived one (the range "
    "point-in-time recovery can replay)",
    ("stanza", "repo"),
)
ARCHIVE_NEWEST_SEGMENT_TIMESTAMP: Series = (
    "awops_pgbackrest_archive_newest_segment_timestamp_seconds",
    "When the newest archived WAL segment was stored in the repository",
    ("stanza", "repo"),
)
CHECK_OK: Series = (
    "awops_pgbackrest_check_ok",
    "1 when the last pgbackrest check passed (archive_command works end to end)",
    ("stanza",),
)
CHECK_LAST_SUCCESS: Series = (
    "awops_pgbackrest_check_last_success_timestamp_seconds",
    "When pgbackrest check last passed",
    ("stanza",),
)

# pgbackrest-restore-verify
RESTORE_DURATION: Series = (
    "awops_pgbackrest_restore_duration_seconds",
    "Measured recovery time of the last restore test: pgbackrest restore until the restored "
    "server accepted connections",
    ("stanza",),
)
RESTORE_VERIFY_LAST_SUCCESS: Series = (
    "awops_pgbackrest_restore_verify_last_success_timestamp_seconds",
    "When the newest pgBackRest backup was last restored, started and read",
    ("stanza",),
)
RESTORED_TABLE_ROWS: Series = (
    "awops_pgbackrest_restored_table_rows",
    "Rows of each ActingWeb table in the last restore test",
    ("stanza", "table"),
)

# The series every backup backend shares (see awops-rules.yml: AwopsBackupTooOld, ...).
BACKUP_LAST_SUCCESS: Series = (
    "awops_backup_last_success_timestamp_seconds",
    "When the last complete backup was written",
    ("backend", "target"),
)
BACKUP_SIZE_SHARED: Series = (
    "awops_backup_size_bytes",
    "Size of the last backup",
    ("backend", "target"),
)
BACKUP_VERIFY_LAST_SUCCESS: Series = (
    "awops_backup_verify_last_success_timestamp_seconds",
    "When a backup was last restored and verified",
    ("backend", "target"),
)
BACKUP_RESTORE_DURATION: Series = (
    "awops_backup_restore_duration_seconds",
    "Wall time of the last restore test (evidence for the recovery-time objective)",
    ("backend", "target"),
)

BACKEND_LABEL = "pgbackrest"

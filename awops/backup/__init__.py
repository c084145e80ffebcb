"""The pieces of ``pg-backup`` and ``pg-backup-verify``, one concern per module.

``dump`` runs pg_dump and streams it, ``targets`` stores and lists backups (a local directory,
S3), ``manifest`` names and describes a backup, ``retention`` picks what to delete,
``encryption`` reads and writes the age file format.
"""

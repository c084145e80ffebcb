"""The pieces of ``pg-backup`` and ``pg-backup-verify``, one concern per module.

``options`` holds both jobs' options, ``target_url`` parses target URLs (for the configuration
too), ``targets`` stores and lists backups (a local directory, S3), ``names`` names them,
``manifest`` describes one, ``catalog`` dates them by the database server's clock,
``retention`` picks what to delete, ``dump`` runs pg_dump and streams it, ``encryption`` reads
and writes the age file format; ``backup_run`` and ``verify_run`` are the jobs' work. Nothing
here imports ``awops.jobs``: the job modules import this package.
"""

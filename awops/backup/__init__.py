"""The pieces of ``pg-backup``, ``pg-backup-verify`` and ``awops backups``, one concern per module.

``options`` holds both jobs' options, ``target_url`` parses target URLs (for the configuration
too), ``targets`` stores and lists backups (a local directory, S3), ``names`` names a backup's
objects, ``manifest`` describes one, ``records`` its verify record and pin marker,
``catalog`` dates them by the database server's clock, ``retention`` picks what to delete,
``dump`` runs pg_dump and streams it, ``globals_dump`` saves the roles, ``actingweb`` reads
ActingWeb's revision and tables, ``guards`` flag empty dumps and row drops, ``encryption``
reads and writes the age file format, ``fetch`` reads a backup back and checks it;
``backup_run`` and ``verify_run`` are the jobs' work. ``sources``, ``listing``, ``pg_source``
and ``check`` serve the ``awops backups`` commands. Nothing here imports ``awops.jobs``: the
job modules import this package.
"""

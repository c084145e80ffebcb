"""Driving pgBackRest: its CLI with JSON output, ``info`` as dataclasses, the WAL archive walk,
and the scratch server a restore test starts.

Modules: :mod:`~awops.pgbackrest.process` (children that die with awops),
:mod:`~awops.pgbackrest.cli` (the ``pgbackrest`` commands), :mod:`~awops.pgbackrest.info`,
:mod:`~awops.pgbackrest.archive`, :mod:`~awops.pgbackrest.server` (scratch directory and
temporary server), :mod:`~awops.pgbackrest.check_run` and :mod:`~awops.pgbackrest.verify_run`
(the two jobs' work). Their series are declared in :mod:`awops.metrics.catalogue`.
"""

# ``backend`` of the shared awops_backup_* series: ``target`` is ``<stanza>/repo<N>`` for
# backups and ``<stanza>`` for restore tests.
BACKEND_LABEL = "pgbackrest"

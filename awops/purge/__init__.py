"""How ``pg-ttl-purge`` deletes expired rows, in short batches that never queue behind the
application.

* :mod:`~awops.purge.target`: the table, column and index to purge, checked; the expiry
  cutoff on the database's clock; the backlog a run starts from.
* :mod:`~awops.purge.walks`: how batches go through the expired rows, along the ttl index or
  the heap in block ranges, and the SQL of one batch.
* :mod:`~awops.purge.run`: one run: the batch loop of each session, the state the sessions
  share, batch sizing.
* :mod:`~awops.purge.tuning`: the constants the job's options quote.

Every module but ``tuning`` imports psycopg; the job module imports them only when it runs,
so commands that merely load the job (for its options) do not pay for psycopg.
"""

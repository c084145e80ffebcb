"""Constants of the purge that the job's option docs quote.

No psycopg here: the job module imports this when it is loaded, not only when it runs.
"""

from __future__ import annotations

# Auto walk: through the heap when at least this fraction of the table is expired (a page in
# index order is visited once per expired row on it; in heap order once), else the index.
HEAP_WALK_MIN_FRACTION = 0.1
# A batch that hit lock_timeout is rolled back and redone this many times before the run
# stops: a row locked in the instant between its check and its delete is skipped on the redo,
# a table another session holds locked is not.
LOCK_TIMEOUT_REDOS = 2
# statement_timeout of a batch when statement_timeout_ms is 0: this many batch_target_ms.
STATEMENT_TIMEOUT_TARGETS = 1.5
# Batch sizes aim at this fraction of batch_target_ms. On a busy server one size's time spreads
# by half again (in bench.purge 3,456 blocks took 71-117 ms), and aimed at the target itself
# the longest batches ran into statement_timeout (in 7 of 31 bench trials), losing their work.
BATCH_AIM_FRACTION = 0.8

"""Every series awops exports, declared once: name, help, labels, kind (and buckets).

Jobs, checks and the runner record through these specs (``metrics.series(PG_UP).set(1)``);
collectors read their names and help from here too. The README's metrics table lists the same
series, and a test holds the two together. Importing this module costs no prometheus_client.

The shared ``awops_backup_*`` series carry ``backend`` and ``target``, so the backup alerts
cover every backend: pg-backup (``postgresql``), dynamodb-backup, rds-backup and pgBackRest
(``target`` ``<stanza>/repo<N>`` for backups, ``<stanza>`` for restore tests).
"""

from __future__ import annotations

from awops.metrics._series import CounterSpec, GaugeSpec, HistogramSpec, SeriesSpec
from awops.ttl_backlog import COUNT_CAP

# Job durations run from a 50 ms health ping to an hours-long backup.
JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 10800)
PURGE_BATCH_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5)

_JOB = ("job",)
_TABLE = ("table",)
_BACKUP = ("backend", "target")
_RDS = ("resource",)  # "instance/<DBInstanceIdentifier>" or "cluster/<DBClusterIdentifier>"
_STANZA = ("stanza",)
_REPO = ("stanza", "repo")
_BACKUP_TYPE = ("stanza", "repo", "type")

# --- the process and every job (the runner) ---
BUILD_INFO = GaugeSpec("awops_build_info", "awops build, always 1", ("version",))
JOB_RUNS = CounterSpec("awops_job_runs_total", "Job runs by final status", ("job", "status"))
JOB_DURATION = HistogramSpec(
    "awops_job_duration_seconds", "Wall time of job runs", _JOB, buckets=JOB_DURATION_BUCKETS
)
JOB_LAST_RUN = GaugeSpec(
    "awops_job_last_run_timestamp_seconds", "When the job last finished a run", _JOB
)
JOB_LAST_SUCCESS = GaugeSpec(
    "awops_job_last_success_timestamp_seconds", "When the job last finished with status ok", _JOB
)
JOB_HEALTHY = GaugeSpec(
    "awops_job_healthy", "1 when the job's last run was ok, 0 when it was not", _JOB
)
JOB_SCHEDULE_PERIOD = GaugeSpec(
    "awops_job_schedule_period_seconds",
    "Longest time between two scheduled runs of the job (for cron, over its calendar)",
    _JOB,
)
JOB_LOCK_SKIPPED = CounterSpec(
    "awops_job_lock_skipped_total",
    "Runs skipped because another replica holds the job's lock or ran its slot",
    _JOB,
)
JOB_LOCK_TAKEOVERS = CounterSpec(
    "awops_job_lock_takeovers_total",
    "Runs that took over from a replica that stopped before finishing",
    _JOB,
)

# --- the metrics port (a collector reads them at scrape time) ---
HTTP_CONNECTIONS = GaugeSpec("awops_http_connections", "Open connections to the metrics port")
HTTP_CONNECTIONS_MAX = GaugeSpec(
    "awops_http_connections_max", "Connections the metrics port keeps open at most"
)
HTTP_CONNECTIONS_DROPPED = CounterSpec(
    "awops_http_connections_dropped_total",
    "Connections closed without the answer asked for: deadline (request or answer too"
    " slow), evicted (oldest unfinished one at the cap), refused (at the cap, all being"
    " answered), descriptors (too few file descriptors left), busy (503: too many"
    " requests waiting for a handler thread)",
    ("reason",),
)

# --- pg-health: awops' own pool ---
PG_POOL_CONNECTIONS = GaugeSpec(
    "awops_pg_pool_connections", "psycopg_pool statistics by state", ("state",)
)
PG_POOL_WAIT = GaugeSpec(
    "awops_pg_pool_wait_seconds", "How long pg-health waited for a pooled connection"
)
PG_POOL_MIN_CONNECTIONS = GaugeSpec(
    "awops_pg_pool_min_connections",
    "Connections the pool keeps open (pool_min_size of the pool in use)",
)
PG_POOL_MAX_CONNECTIONS = GaugeSpec(
    "awops_pg_pool_max_connections",
    "Connections the pool opens at most (pool_max_size of the pool in use)",
)
# psycopg_pool's running counters (get_stats()).
PG_POOL_REQUESTS = CounterSpec("awops_pg_pool_requests_total", "Requests for a pooled connection")
PG_POOL_REQUESTS_QUEUED = CounterSpec(
    "awops_pg_pool_requests_queued_total", "Requests that had to wait for a connection"
)
PG_POOL_REQUESTS_ERRORS = CounterSpec(
    "awops_pg_pool_requests_errors_total", "Requests that failed (timeout, too many waiting)"
)
PG_POOL_REQUESTS_WAIT = CounterSpec(
    "awops_pg_pool_requests_wait_seconds_total", "Time requests spent waiting"
)
PG_POOL_CONNECTION_ERRORS = CounterSpec(
    "awops_pg_pool_connection_errors_total", "Failed attempts to open a connection"
)
PG_POOL_CONNECTIONS_LOST = CounterSpec(
    "awops_pg_pool_connections_lost_total", "Pooled connections found broken"
)

# --- pg-health: the server ---
PG_FIGURE_AVAILABLE = GaugeSpec(
    "awops_pg_figure_available",
    "1 when pg-health could read the figure, 0 when it could not",
    ("figure",),
)
PG_UP = GaugeSpec("awops_pg_up", "1 when the last pg-health reached PostgreSQL")
PG_PING = GaugeSpec("awops_pg_ping_seconds", "Round trip of SELECT 1 through the pool")
PG_CONNECTIONS = GaugeSpec(
    "awops_pg_connections", "Client connections by pg_stat_activity state", ("state",)
)
PG_MAX_CONNECTIONS = GaugeSpec("awops_pg_max_connections", "The server's max_connections")
PG_LONGEST_TRANSACTION = GaugeSpec(
    "awops_pg_longest_transaction_seconds", "Age of the oldest open transaction"
)
PG_IDLE_IN_TRANSACTION = GaugeSpec(
    "awops_pg_idle_in_transaction_seconds",
    "How long the longest idle-in-transaction session has been idle",
)
PG_LOCK_WAITING = GaugeSpec("awops_pg_lock_waiting_sessions", "Sessions waiting on a lock")
PG_IN_RECOVERY = GaugeSpec("awops_pg_in_recovery", "1 when the server is a replica")
PG_REPLICATION_LAG = GaugeSpec(
    "awops_pg_replication_lag_seconds", "How far replay trails the primary (0 on one)"
)
PG_XID_AGE = GaugeSpec("awops_pg_xid_age", "Largest age(datfrozenxid) of the databases")
PG_MULTIXACT_AGE = GaugeSpec(
    "awops_pg_multixact_age", "Largest mxid_age(datminmxid) of the databases"
)
PG_DATABASE_SIZE = GaugeSpec("awops_pg_database_size_bytes", "Size of the database")
# The server's own counters, as gauges: the server resets them (pg_stat_reset) apart from
# awops' restarts; increase() and rate() read them all the same.
PG_DEADLOCKS = GaugeSpec(
    "awops_pg_deadlocks", "Deadlocks in the database since its statistics were reset"
)
PG_CONFLICTS = GaugeSpec(
    "awops_pg_conflicts",
    "Queries cancelled by recovery conflicts in the database (on a replica) since its "
    "statistics were reset",
)
PG_LONGEST_LOCK_WAIT = GaugeSpec(
    "awops_pg_longest_lock_wait_seconds",
    "How long the session waiting longest for a lock has waited (0: none waits)",
)

# --- pg-health: WAL archiving ---
PG_ARCHIVER_ENABLED = GaugeSpec(
    "awops_pg_archiver_enabled",
    "1 when the server archives WAL (archive_mode on, or always on a replica)",
)
PG_ARCHIVER_FAILING = GaugeSpec(
    "awops_pg_archiver_failing",
    "1 when the archiver's latest attempt failed and none succeeded since",
)
PG_ARCHIVER_FAILURES = GaugeSpec(
    "awops_pg_archiver_failures",
    "Failed archive attempts since the server's statistics were reset (failed_count)",
)
PG_ARCHIVER_ARCHIVED_FILES = GaugeSpec(
    "awops_pg_archiver_archived_files",
    "WAL files archived since the server's statistics were reset (archived_count)",
)
PG_ARCHIVER_LAST_ARCHIVED_AGE = GaugeSpec(
    "awops_pg_archiver_last_archived_age_seconds",
    "Age of the last archived WAL file (+Inf: none since the statistics were reset)",
)
PG_ARCHIVER_PENDING_SEGMENTS = GaugeSpec(
    "awops_pg_archiver_pending_segments", "WAL files waiting to be archived (.ready)"
)
PG_ARCHIVER_OLDEST_PENDING_AGE = GaugeSpec(
    "awops_pg_archiver_oldest_pending_age_seconds",
    "How long the oldest WAL file waiting to be archived has waited (0: none waits)",
)

# --- pg-health: replication slots ---
PG_SLOT_ACTIVE = GaugeSpec(
    "awops_pg_replication_slot_active", "1 when a consumer is connected to the slot", ("slot",)
)
PG_SLOT_RETAINED = GaugeSpec(
    "awops_pg_replication_slot_retained_bytes",
    "WAL the slot keeps from removal (0: none, never reserved or lost)",
    ("slot",),
)
PG_SLOT_WAL_STATUS = GaugeSpec(
    "awops_pg_replication_slot_wal_status",
    "1 for the slot's wal_status: reserved, extended, unreserved or lost",
    ("slot", "status"),
)
PG_SLOT_WAL_LIMIT = GaugeSpec(
    "awops_pg_replication_slot_wal_limit_bytes",
    "max_slot_wal_keep_size, or max_wal_size when that is unlimited",
)

# --- pg-health: ActingWeb's tables ---
PG_TABLE_LIVE_ROWS = GaugeSpec("awops_pg_table_live_rows", "Estimated live rows", _TABLE)
PG_TABLE_DEAD_ROWS = GaugeSpec("awops_pg_table_dead_rows", "Estimated dead rows", _TABLE)
PG_TABLE_SIZE = GaugeSpec("awops_pg_table_size_bytes", "Size with indexes and TOAST", _TABLE)
PG_TABLE_LAST_VACUUM = GaugeSpec(
    "awops_pg_table_last_vacuum_timestamp_seconds",
    "Last vacuum or autovacuum (0: never since statistics were reset)",
    _TABLE,
)
PG_TABLE_LAST_ANALYZE = GaugeSpec(
    "awops_pg_table_last_analyze_timestamp_seconds",
    "Last analyze or autoanalyze (0: never since statistics were reset)",
    _TABLE,
)
PG_TABLE_MOD_SINCE_ANALYZE = GaugeSpec(
    "awops_pg_table_mod_since_analyze_rows",
    "Rows inserted, updated or deleted since the last analyze",
    _TABLE,
)

# --- the ttl backlog: pg-health and pg-ttl-purge both set it ---
PG_TTL_EXPIRED_ROWS = GaugeSpec(
    "awops_pg_ttl_expired_rows",
    f"Rows past their ttl, not yet deleted: counted exactly up to {COUNT_CAP}, above that the "
    "planner's estimate",
    _TABLE,
)
PG_TTL_OLDEST_EXPIRED_AGE = GaugeSpec(
    "awops_pg_ttl_oldest_expired_age_seconds",
    "Database time minus the ttl of the oldest expired row (0: none)",
    _TABLE,
)

# --- pg-ttl-purge ---
PG_TTL_PURGED_ROWS = CounterSpec(
    "awops_pg_ttl_purged_rows_total", "Expired rows deleted by pg-ttl-purge", _TABLE
)
PG_TTL_HELD_ROWS_SKIPPED = CounterSpec(
    "awops_pg_ttl_held_rows_skipped_total",
    "Expired rows pg-ttl-purge left to a later run: the application held them locked",
    _TABLE,
)
PG_TTL_LOCK_TIMEOUTS = CounterSpec(
    "awops_pg_ttl_lock_timeouts_total",
    "pg-ttl-purge batches rolled back at lock_timeout_ms (another session held a lock)",
    _TABLE,
)
PG_TTL_BATCH_DURATION = HistogramSpec(
    "awops_pg_ttl_batch_duration_seconds",
    "Wall time of one pg-ttl-purge batch transaction",
    _TABLE,
    buckets=PURGE_BATCH_DURATION_BUCKETS,
)
PG_TTL_VACUUM_RUNS = CounterSpec(
    "awops_pg_ttl_vacuum_runs_total",
    "VACUUM (ANALYZE) runs pg-ttl-purge started after a purge, by result "
    "(vacuumed, lock_timeout, not_permitted, stopped, timed_out, failed)",
    ("table", "result"),
)
PG_TTL_VACUUM_DURATION = GaugeSpec(
    "awops_pg_ttl_vacuum_duration_seconds",
    "Wall time of the last VACUUM (ANALYZE) pg-ttl-purge ran after a purge",
    _TABLE,
)

# --- every backup backend (see awops-rules.yml: AwopsBackupTooOld, ...) ---
BACKUP_LAST_SUCCESS = GaugeSpec(
    "awops_backup_last_success_timestamp_seconds",
    "When the last complete backup was written",
    _BACKUP,
)
BACKUP_SIZE = GaugeSpec("awops_backup_size_bytes", "Size of the last backup", _BACKUP)
BACKUP_VERIFY_LAST_SUCCESS = GaugeSpec(
    "awops_backup_verify_last_success_timestamp_seconds",
    "When a backup was last restored and verified",
    _BACKUP,
)
BACKUP_RESTORE_DURATION = GaugeSpec(
    "awops_backup_restore_duration_seconds",
    "Wall time of the last restore test (evidence for the recovery-time objective)",
    _BACKUP,
)

# --- pg-backup ---
BACKUP_DURATION = GaugeSpec(
    "awops_backup_duration_seconds", "Wall time of the last complete backup", _BACKUP
)
BACKUP_STORED = GaugeSpec(
    "awops_backup_stored_backups", "Complete backups on the target after retention", _BACKUP
)
BACKUP_RETENTION_DELETED = CounterSpec(
    "awops_backup_retention_deleted_total", "Backups deleted by retention", _BACKUP
)
BACKUP_FUTURE_DATED = GaugeSpec(
    "awops_backup_future_dated_backups",
    "Backups dated after the database server's clock: not counted, not deleted",
    _BACKUP,
)
BACKUP_GLOBALS_SAVED = GaugeSpec(
    "awops_backup_globals_saved",
    "1 when the last backup saved the cluster's roles, 0 when the server refused",
    _BACKUP,
)
BACKUP_UNREADABLE_MANIFESTS = GaugeSpec(
    "awops_backup_unreadable_manifests",
    "Backups whose manifest cannot be read: not counted, not deleted",
    _BACKUP,
)

# --- DynamoDB: the tables (dynamodb-gsi, -ttl, -pitr) ---
DYNAMODB_TABLE_ACTIVE = GaugeSpec(
    "awops_dynamodb_table_active", "1 when the table exists and is ACTIVE", _TABLE
)
DYNAMODB_TABLE_ITEMS = GaugeSpec(
    "awops_dynamodb_table_items", "ItemCount from DescribeTable (AWS updates it ~6 h)", _TABLE
)
DYNAMODB_TABLE_SIZE = GaugeSpec(
    "awops_dynamodb_table_size_bytes", "TableSizeBytes from DescribeTable", _TABLE
)
DYNAMODB_TABLE_PROVISIONED = GaugeSpec(
    "awops_dynamodb_table_provisioned", "1 when the table bills PROVISIONED", _TABLE
)
DYNAMODB_GSI_ACTIVE = GaugeSpec(
    "awops_dynamodb_gsi_active",
    "1 when the GSI exists and is ACTIVE, 0 when it is missing or not ACTIVE",
    ("table", "index"),
)
DYNAMODB_GSI_BACKFILLING = GaugeSpec(
    "awops_dynamodb_gsi_backfilling", "1 while DynamoDB backfills the GSI", ("table", "index")
)
DYNAMODB_TTL_ENABLED = GaugeSpec(
    "awops_dynamodb_ttl_enabled",
    "1 when TTL is ENABLED (or ENABLING) on the expected attribute",
    _TABLE,
)
DYNAMODB_TTL_EXPIRED_ITEMS = GaugeSpec(
    "awops_dynamodb_ttl_expired_items",
    "Items expired longer than grace_seconds ago but still present (estimate)",
    _TABLE,
)
DYNAMODB_TTL_OLDEST_EXPIRED_AGE = GaugeSpec(
    "awops_dynamodb_ttl_oldest_expired_age_seconds",
    "How long ago the oldest expired item still present expired; 0 when none was found",
    _TABLE,
)
DYNAMODB_PITR_ENABLED = GaugeSpec(
    "awops_dynamodb_pitr_enabled", "1 when point-in-time recovery is ENABLED", _TABLE
)
DYNAMODB_PITR_LATEST_RESTORABLE_AGE = GaugeSpec(
    "awops_dynamodb_pitr_latest_restorable_age_seconds", "Age of LatestRestorableDateTime", _TABLE
)
DYNAMODB_PITR_RESTORE_WINDOW = GaugeSpec(
    "awops_dynamodb_pitr_restore_window_seconds",
    "LatestRestorableDateTime - EarliestRestorableDateTime",
    _TABLE,
)

# --- DynamoDB: dynamodb-backup and dynamodb-restore-verify ---
DYNAMODB_BACKUPS = GaugeSpec(
    "awops_dynamodb_backups", "awops' on-demand backups kept, per table", _TABLE
)
DYNAMODB_RESTORE_DURATION = GaugeSpec(
    "awops_dynamodb_restore_duration_seconds",
    "How long the last verification restore took to become ACTIVE",
    _TABLE,
)

# --- rds-backup ---
RDS_AVAILABLE = GaugeSpec(
    "awops_rds_available",
    "1 when the RDS instance or cluster exists and is available (or backing up)",
    _RDS,
)
RDS_BACKUP_RETENTION_PERIOD = GaugeSpec(
    "awops_rds_backup_retention_period_seconds",
    "BackupRetentionPeriod of automated backups; 0 = automated backups disabled",
    _RDS,
)
RDS_LATEST_RESTORABLE_AGE = GaugeSpec(
    "awops_rds_latest_restorable_age_seconds",
    "Age of LatestRestorableTime: what a point-in-time restore now would lose",
    _RDS,
)
RDS_AUTOMATED_SNAPSHOTS = GaugeSpec(
    "awops_rds_automated_snapshots", "Automated snapshots in status available", _RDS
)
RDS_SNAPSHOT_AGE = GaugeSpec(
    "awops_rds_snapshot_age_seconds", "Age of the newest available automated snapshot", _RDS
)
RDS_DELETION_PROTECTION = GaugeSpec(
    "awops_rds_deletion_protection", "1 when DeletionProtection is on", _RDS
)
RDS_STORAGE_ENCRYPTED = GaugeSpec(
    "awops_rds_storage_encrypted", "1 when the storage is encrypted (StorageEncrypted)", _RDS
)

# --- pgbackrest (the check of the engine) ---
PGBACKREST_STANZA_OK = GaugeSpec(
    "awops_pgbackrest_stanza_ok",
    "1 when pgbackrest info reports the stanza ok (status code 0)",
    _STANZA,
)
PGBACKREST_STANZA_STATUS_CODE = GaugeSpec(
    "awops_pgbackrest_stanza_status_code",
    "pgBackRest's status code of the stanza (0 ok, 1 missing stanza path, 2 no valid backups, "
    "3 missing stanza data, 4 different across repos, 5 database mismatch, 99 other)",
    _STANZA,
)
PGBACKREST_REPO_OK = GaugeSpec(
    "awops_pgbackrest_repo_ok", "1 when pgbackrest info reports the repository ok", _REPO
)
PGBACKREST_LAST_BACKUP_TIMESTAMP = GaugeSpec(
    "awops_pgbackrest_last_backup_timestamp_seconds",
    "When the newest backup of this type finished (pgBackRest's stop time)",
    _BACKUP_TYPE,
)
PGBACKREST_BACKUP_SIZE = GaugeSpec(
    "awops_pgbackrest_backup_size_bytes",
    "Database size as of the newest backup of this type",
    _BACKUP_TYPE,
)
PGBACKREST_BACKUP_REPOSITORY_SIZE = GaugeSpec(
    "awops_pgbackrest_backup_repository_bytes",
    "What the newest backup of this type added to the repository (compressed)",
    _BACKUP_TYPE,
)
PGBACKREST_BACKUPS = GaugeSpec(
    "awops_pgbackrest_backups", "Backup sets in the repository, by type", _BACKUP_TYPE
)
PGBACKREST_ARCHIVE_GAP = GaugeSpec(
    "awops_pgbackrest_archive_gap",
    "1 when WAL segments are missing from the archive between the newest backup's start and "
    "the newest archived segment",
    _REPO,
)
PGBACKREST_ARCHIVE_MISSING_SEGMENTS = GaugeSpec(
    "awops_pgbackrest_archive_missing_segments",
    "WAL segments missing from the archive after the newest backup's start",
    _REPO,
)
PGBACKREST_ARCHIVE_SEGMENTS_SINCE_BACKUP = GaugeSpec(
    "awops_pgbackrest_archive_segments_since_backup",
    "WAL segments from the newest backup's start to the newest archived one (the range "
    "point-in-time recovery can replay)",
    _REPO,
)
PGBACKREST_ARCHIVE_NEWEST_SEGMENT_TIMESTAMP = GaugeSpec(
    "awops_pgbackrest_archive_newest_segment_timestamp_seconds",
    "When the newest archived WAL segment was stored in the repository",
    _REPO,
)
PGBACKREST_CHECK_OK = GaugeSpec(
    "awops_pgbackrest_check_ok",
    "1 when the last pgbackrest check passed (archive_command works end to end)",
    _STANZA,
)
PGBACKREST_CHECK_LAST_SUCCESS = GaugeSpec(
    "awops_pgbackrest_check_last_success_timestamp_seconds",
    "When pgbackrest check last passed",
    _STANZA,
)

# --- pgbackrest-restore-verify ---
PGBACKREST_RESTORE_DURATION = GaugeSpec(
    "awops_pgbackrest_restore_duration_seconds",
    "Measured recovery time of the last restore test: pgbackrest restore until the restored "
    "server accepted connections",
    _STANZA,
)
PGBACKREST_RESTORE_VERIFY_LAST_SUCCESS = GaugeSpec(
    "awops_pgbackrest_restore_verify_last_success_timestamp_seconds",
    "When the newest pgBackRest backup was last restored, started and read",
    _STANZA,
)
PGBACKREST_RESTORED_TABLE_ROWS = GaugeSpec(
    "awops_pgbackrest_restored_table_rows",
    "Rows of each ActingWeb table in the last restore test",
    ("stanza", "table"),
)

ALL: tuple[SeriesSpec, ...] = tuple(
    value
    for value in list(globals().values())
    if isinstance(value, CounterSpec | GaugeSpec | HistogramSpec)
)

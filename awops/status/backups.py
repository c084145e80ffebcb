"""The newest backup on each target, read once when the daemon starts.

Without it a restarted daemon knows no backup until the next ``pg-backup`` run (a day away):
``awops_backup_last_success_timestamp_seconds`` is missing, the backup-age alert cannot fire
and the status page shows nothing. The scan reads each target's manifests (checked and dated
as :mod:`awops.backup.catalog` does), and the newest ``<backup id>.verify.json`` records that
``pg-backup-verify`` leaves beside the backups it verified, read without trusting them.

After a restart the last-success series carries the newest backup's date (its snapshot time,
by the database server's clock): a little older than the value the backup run set, never newer.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from awops.backup.catalog import Catalog, ServerClock, read_catalog
from awops.backup.names import backup_prefix, verify_record_name
from awops.backup.records import VerifyRecord
from awops.backup.target_url import TargetUrlError, parse_target_url
from awops.backup.targets import Target, open_target
from awops.errors import JobError
from awops.logs import scrubber
from awops.metrics import catalogue
from awops.status.board import NewestBackup, StatusBoard, Verification

if TYPE_CHECKING:
    from awops.config import Config
    from awops.context import Resources
    from awops.metrics import GaugeSpec, Metrics

logger = logging.getLogger(__name__)

# Verify records read per target at most, newest first, looking for the last one that passed.
MAX_VERIFY_RECORDS = 10


def target_label(url: str) -> str:
    """The ``target`` label the backup jobs give ``url`` (as their Target objects spell it)."""
    try:
        where = parse_target_url(url)
    except TargetUrlError:
        return url
    return "file://" + str(Path(where.path)) if where.scheme == "file" else where.display


def start_backup_scan(
    config: Config, resources: Resources, metrics: Metrics, board: StatusBoard
) -> threading.Thread | None:
    """Scan every ``[backup]`` target in a background thread; None when there is none."""
    if "postgresql" not in config.backends or not config.backup.targets:
        return None
    thread = threading.Thread(
        target=scan_backup_targets,
        args=(config, resources, metrics, board),
        name="awops-backup-scan",
        daemon=True,
    )
    thread.start()
    return thread


def scan_backup_targets(
    config: Config, resources: Resources, metrics: Metrics, board: StatusBoard
) -> None:
    """Record each target's newest backup and newest verify result on ``board`` and in the
    backup series; a target that cannot be read is logged and shown, never raised."""
    database = config.postgresql.dbname
    server_now = _server_now(resources)
    for url in config.backup.targets:
        label = target_label(url)
        try:
            target = _open(url, config, resources)
            catalog = read_catalog(target, database, server_now)
            names = set(target.names(backup_prefix(database)))
            verifications = _verifications(target, catalog, names)
        except Exception as exc:  # TargetError, BackendUnavailable, anything boto3 raises
            message = scrubber.scrub(str(exc) or type(exc).__name__)
            logger.warning("backup target %s could not be read at start: %s", label, message)
            board.target_error("postgresql", label, message)
            continue
        _record(board, metrics, target.url, database, catalog, verifications)
    logger.info("read the newest backup of %d target(s)", len(config.backup.targets))


def _server_now(resources: Resources) -> float:
    """The database server's clock, which dates backups; the host's when it cannot be read."""
    try:
        with resources.pg.connection() as conn:
            return ServerClock.read(conn).now()
    except Exception as exc:
        logger.info(
            "backup scan: the database server's clock cannot be read (%s); using the host's",
            scrubber.scrub(str(exc) or type(exc).__name__),
        )
        return time.time()


def _open(url: str, config: Config, resources: Resources) -> Target:
    # Only an S3 target needs the AWS clients (and boto3).
    aws = resources.aws if parse_target_url(url).scheme == "s3" else None
    return open_target(url, aws, config.backup)


def _verifications(target: Target, catalog: Catalog, names: set[str]) -> list[Verification]:
    """The verify records of the newest backups, newest first, up to the newest that passed."""
    found: list[Verification] = []
    reads = 0
    for dated in reversed(catalog.good):
        name = verify_record_name(dated.backup)
        if name not in names:
            continue
        if reads >= MAX_VERIFY_RECORDS:
            break
        reads += 1
        verification = read_verify_record(target, dated.backup, name)
        if verification is None:
            continue
        found.append(verification)
        if verification.ok:
            break
    return found


def read_verify_record(target: Target, backup: str, name: str) -> Verification | None:
    """The verify record ``name`` of ``backup``; None (logged) when it cannot be read."""
    where = f"{target.url}/{name}"
    try:
        record = VerifyRecord.from_json(target.read_small(name), where)
    except JobError as exc:
        logger.warning("verify record ignored: %s", exc)
        return None
    return Verification(backup, record.at_timestamp, record.ok)


def _record(
    board: StatusBoard,
    metrics: Metrics,
    label: str,
    database: str,
    catalog: Catalog,
    verifications: list[Verification],
) -> None:
    labels = {"backend": "postgresql", "target": label}
    newest = catalog.newest
    if newest is None:
        logger.info("backup target %s holds no complete backup of %s", label, database)
        return
    offered = NewestBackup(newest.backup, newest.created, newest.manifest.size_bytes)
    # A run that finished while the scan read is newer: it keeps its values.
    if board.offer_backup("postgresql", label, offered, database) and _raise_to(
        metrics, catalogue.BACKUP_LAST_SUCCESS, labels, newest.created
    ):
        metrics.series(catalogue.BACKUP_SIZE).labels(**labels).set(newest.manifest.size_bytes)
    for verification in verifications:
        board.offer_verification("postgresql", label, verification)
        if verification.ok:
            _raise_to(metrics, catalogue.BACKUP_VERIFY_LAST_SUCCESS, labels, verification.at)
    logger.info("backup target %s: newest backup %s", label, newest.backup)


def _raise_to(metrics: Metrics, series: GaugeSpec, labels: dict[str, str], value: float) -> bool:
    """Set the series to ``value`` unless it holds a later time already (a run set it)."""
    current = metrics.registry.get_sample_value(series.name, labels)
    if current is not None and current >= value:
        return False
    metrics.series(series).labels(**labels).set(value)
    return True

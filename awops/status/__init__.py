"""The daemon's status for people and scripts: ``/`` (a page) and ``/api/status`` (JSON).

``board`` keeps what the runs and the backup targets last said, in memory; ``backups`` reads
each target's newest backup once at start-up; ``page`` renders the HTML; ``routes`` serves
both paths; ``client`` is what ``awops status`` reads them with.
"""

from __future__ import annotations

from awops.status.backups import scan_backup_targets, start_backup_scan, target_label
from awops.status.board import DaemonView, PlannedJob, StatusBoard
from awops.status.page import render_page
from awops.status.routes import daemon_view, status_routes

__all__ = [
    "DaemonView",
    "PlannedJob",
    "StatusBoard",
    "daemon_view",
    "render_page",
    "scan_backup_targets",
    "start_backup_scan",
    "status_routes",
    "target_label",
]

"""``/`` and ``/api/status`` on the daemon's HTTP port, and the daemon's side of the document.

Both routes read only what the board holds in memory; they are served on the server's worker
threads so that basic auth, when configured, guards them as it guards ``/metrics``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from awops.metrics.http import Handler, Request, Response
from awops.status.backups import target_label
from awops.status.board import DaemonView, PlannedJob, StatusBoard
from awops.status.page import CONTENT_SECURITY_POLICY, DEFAULT_REFRESH_SECONDS, render_page

if TYPE_CHECKING:
    from awops.config import Config

# ?refresh=N on the page: 0 turns it off; others are held within these bounds.
MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS = 2, 3600
_COMMON_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def daemon_view(config: Config, scheduled_jobs: Iterable[Any]) -> DaemonView:
    """The daemon's plan from its APScheduler jobs (``id``, ``next_run_time``); ids that
    are not a configured job (the heartbeat) are left out."""
    planned = []
    for scheduled in scheduled_jobs:
        job_config = config.jobs.get(scheduled.id)
        if job_config is None:
            continue
        next_run = scheduled.next_run_time
        planned.append(
            PlannedJob(
                scheduled.id,
                job_config.schedule.text,
                next_run.timestamp() if next_run is not None else None,
            )
        )
    targets = [target_label(url) for url in config.backup.targets]
    if "postgresql" not in config.backends:
        targets = []
    return DaemonView(planned, targets, config.daemon.instance or socket.gethostname())


def status_routes(
    board: StatusBoard, view: Callable[[], DaemonView], clock: Callable[[], float] = time.time
) -> list[tuple[str, Handler]]:
    """``(path, handler)`` for ``/`` (the page) and ``/api/status`` (the document)."""

    def api(request: Request) -> Response:
        body = json.dumps(board.document(view()), indent=1).encode()
        return Response(HTTPStatus.OK, "application/json", body, _COMMON_HEADERS)

    def page(request: Request) -> Response:
        html = render_page(board.document(view()), clock(), refresh_seconds(request.query))
        headers = (*_COMMON_HEADERS, ("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        return Response(HTTPStatus.OK, "text/html; charset=utf-8", html.encode(), headers)

    return [("/", page), ("/api/status", api)]


def refresh_seconds(query: str) -> int:
    """The page's refresh interval from ``?refresh=N``; the default for anything unreadable."""
    values = parse_qs(query).get("refresh")
    if not values:
        return DEFAULT_REFRESH_SECONDS
    try:
        wanted = int(values[-1])
    except ValueError:
        return DEFAULT_REFRESH_SECONDS
    if wanted <= 0:
        return 0
    return min(max(wanted, MIN_REFRESH_SECONDS), MAX_REFRESH_SECONDS)

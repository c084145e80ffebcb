"""Dead-man's-switch pings and a failure webhook, sent beside the job, never in its way.

A job with ``ping_url`` pings ``<url>/start`` when it starts, ``<url>`` when it ends ``ok`` and
``<url>/fail`` when it ends ``problem`` or ``error``, with the summary as the body: the
protocol of healthchecks.io and its clones. ``[notifications] failure_webhook_url`` receives
a JSON document for every failed run. Dry runs and skipped runs send nothing.

Deliveries run on a sender thread, in order, with a bounded timeout and bounded retries;
a failed delivery is logged and dropped. The sender thread is not a daemon thread, so
``run-once`` delivers what it queued before the process exits (bounded by the same limits).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from awops import __version__
from awops.result import JobResult, Status

if TYPE_CHECKING:
    from awops.config import Config

logger = logging.getLogger(__name__)

# Pings are tiny; a full queue means the endpoint has been down for a while: drop, not grow.
MAX_QUEUED = 100
MAX_BODY_BYTES = 10_000  # healthchecks.io keeps the first 100 kB; a summary is one line
_BACKOFF_BASE_SECONDS = 0.5


@dataclass
class Delivery:
    what: str  # for logs: "pg-backup start ping", never the URL (it is a secret)
    url: str
    body: bytes
    content_type: str


class Notifier:
    """A :class:`~awops.runner.RunObserver` that sends pings and the failure webhook."""

    def __init__(
        self,
        ping_urls: Mapping[str, str],
        failure_webhook_url: str = "",
        timeout_seconds: float = 5.0,
        retries: int = 2,
        instance: str = "",
    ) -> None:
        self.ping_urls = {job: url.rstrip("/") for job, url in ping_urls.items() if url}
        self.failure_webhook_url = failure_webhook_url
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.instance = instance or socket.gethostname()
        self._queue: deque[Delivery] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._sender: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: Config) -> Notifier | None:
        """A notifier when anything is configured, else None (nothing to do, no thread)."""
        ping_urls = {name: job.ping_url for name, job in config.jobs.items() if job.ping_url}
        settings = config.notifications
        if not ping_urls and not settings.failure_webhook_url:
            return None
        return cls(
            ping_urls,
            settings.failure_webhook_url,
            settings.timeout_seconds,
            settings.retries,
            config.daemon.instance,
        )

    # -- RunObserver -------------------------------------------------------------------------

    def run_started(self, job: str, run_id: str, dry_run: bool) -> None:
        url = self.ping_urls.get(job)
        if url and not dry_run:
            self._enqueue(Delivery(f"{job} start ping", f"{url}/start", b"", "text/plain"))

    def run_finished(self, result: JobResult, dry_run: bool) -> None:
        if dry_run or result.status is Status.SKIPPED:
            return
        failed = result.status.is_failure
        url = self.ping_urls.get(result.job)
        if url:
            body = f"{result.status}: {result.summary}".encode()[:MAX_BODY_BYTES]
            kind = "fail" if failed else "success"
            target = f"{url}/fail" if failed else url
            self._enqueue(
                Delivery(f"{result.job} {kind} ping", target, body, "text/plain; charset=utf-8")
            )
        if failed and self.failure_webhook_url:
            document = {
                "source": "awops",
                "version": __version__,
                "instance": self.instance,
                "job": result.job,
                "status": str(result.status),
                "summary": result.summary,
                "run_id": result.run_id,
                "duration_seconds": round(result.duration_seconds, 3),
                "details": result.details,
            }
            body = json.dumps(document, default=str).encode()
            self._enqueue(
                Delivery(
                    f"{result.job} failure webhook",
                    self.failure_webhook_url,
                    body,
                    "application/json",
                )
            )

    # -- sending -----------------------------------------------------------------------------

    def flush(self, timeout_seconds: float) -> bool:
        """Wait until everything queued was sent or given up on; False on timeout."""
        deadline = time.monotonic() + timeout_seconds
        with self._idle:
            while self._queue or self._sender is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _enqueue(self, delivery: Delivery) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                logger.warning("notification queue full; dropping the %s", delivery.what)
                return
            self._queue.append(delivery)
            if self._sender is None:
                # Not a daemon thread: the interpreter waits for it, so run-once delivers
                # before it exits. It ends as soon as the queue is empty.
                self._sender = threading.Thread(
                    target=self._drain, name="awops-notify", daemon=False
                )
                self._sender.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._sender = None
                    self._idle.notify_all()
                    return
                delivery = self._queue.popleft()
            try:
                self._deliver(delivery)
            except Exception:  # a bug here must not kill the sender with items queued
                logger.exception("sending the %s failed unexpectedly", delivery.what)

    def _deliver(self, delivery: Delivery) -> bool:
        attempts = 1 + self.retries
        for attempt in range(1, attempts + 1):
            problem, retryable = self._send_once(delivery)
            if problem is None:
                logger.debug("sent the %s", delivery.what)
                return True
            if not retryable or attempt == attempts:
                logger.warning(
                    "could not send the %s (attempt %d of %d): %s; the job is unaffected",
                    delivery.what,
                    attempt,
                    attempts,
                    problem,
                )
                return False
            # Exponential backoff with full jitter, as psycopg_pool's AttemptWithBackoff.
            time.sleep(random.uniform(0, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))
        return False

    def _send_once(self, delivery: Delivery) -> tuple[str | None, bool]:
        """(None, _) on success, else (what went wrong, whether a retry may help)."""
        request = urllib.request.Request(
            delivery.url,
            data=delivery.body,
            method="POST",
            headers={
                "Content-Type": delivery.content_type,
                "User-Agent": f"awops/{__version__}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            # 429 and 5xx are the endpoint's trouble; other 4xx will not get better.
            return f"HTTP {exc.code}", exc.code == 429 or exc.code >= 500
        except (urllib.error.URLError, OSError) as exc:
            reason: Any = getattr(exc, "reason", exc)
            return f"{type(reason).__name__}: {_without_url(str(reason), delivery.url)}", True
        return None, False


def _without_url(text: str, url: str) -> str:
    return text.replace(url, "<url>")

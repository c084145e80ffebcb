"""A thread that acts on a run's stop request for work that blocks and cannot poll it itself
(a query, a wait on a server starting)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


class StopWatcher:
    """Calls ``on_stop`` once, from a thread of its own, as soon as ``stop_requested()`` says so;
    ``fired`` tells afterwards whether it did. Use as a context manager around the blocking
    work."""

    def __init__(
        self,
        stop_requested: Callable[[], bool],
        on_stop: Callable[[], None],
        name: str = "awops-stop-watch",
    ) -> None:
        self._stop_requested = stop_requested
        self._on_stop = on_stop
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name=name, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            if self._stop_requested():
                self.fired = True
                try:
                    self._on_stop()
                except Exception:
                    logger.warning("stopping after a stop request failed", exc_info=True)
                return

    def __enter__(self) -> StopWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

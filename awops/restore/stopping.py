"""A stop request: SIGTERM or SIGINT turned into an event the restore checks between steps,
plus callbacks that end what blocks (kill a child's process group, cancel a query).

The callbacks run in the signal handler, so each does one quick thing; the restore's own
``finally`` blocks do the cleanup (reap children, drop what it created).
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from awops.restore.request import RestoreInterrupted

logger = logging.getLogger(__name__)


class StopRequest:
    """Set once by a signal (or a test); every registered callback runs once when it is."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = ""
        # Plain dict operations only: the signal handler may run while the main thread is
        # registering, so no lock (which the handler could wait on forever) guards this.
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> None:
        """Ask the restore to stop: set the event and run every callback (once)."""
        if not self._event.is_set():
            self._reason = reason
            self._event.set()
        for key in list(self._callbacks):
            callback = self._callbacks.pop(key, None)
            if callback is not None:
                _run_quietly(callback)

    def register(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on a stop request (now, when one came already); returns a function
        that unregisters it."""
        key = next(self._ids)
        self._callbacks[key] = callback
        if self._event.is_set():
            self.request(self._reason)
        return lambda: self._callbacks.pop(key, None) and None

    def check(self) -> None:
        """Raise :class:`RestoreInterrupted` once a stop was requested."""
        if self._event.is_set():
            raise RestoreInterrupted(f"stopped by {self._reason}")

    def wait(self, timeout_seconds: float) -> bool:
        return self._event.wait(timeout_seconds)

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        """A signal handler: ``signal.signal(signal.SIGTERM, stop.handle_signal)``."""
        name = signal.Signals(signum).name
        if not self._event.is_set():
            logger.warning("%s received: stopping the restore and removing what it created", name)
        self.request(name)


def _run_quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a failing callback must not keep the others from running
        logger.exception("a stop callback failed")

"""sd_notify over ``$NOTIFY_SOCKET`` with the standard library: READY, WATCHDOG, STOPPING.

With ``Type=notify`` systemd waits for ``READY=1`` before it calls the service started, and with
``WatchdogSec`` it restarts the service when ``WATCHDOG=1`` stops arriving. Outside systemd
(no ``$NOTIFY_SOCKET``) every call is a no-op, so the daemon needs no special case.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends datagrams to the socket systemd named; never raises."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract-namespace socket: a leading NUL byte on the wire.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_seconds = _watchdog_seconds(environ)

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines; True when systemd got them."""
        if not self._address:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
        except OSError as exc:
            logger.warning("sd_notify to %s failed: %s", self._address.lstrip("\0"), exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")


def _watchdog_seconds(environ: Mapping[str, str]) -> float | None:
    """``WatchdogSec`` as systemd passes it, when it is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000

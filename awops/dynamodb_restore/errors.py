"""What a DynamoDB recovery command can refuse, and with which exit code."""

from __future__ import annotations

from awops.errors import AwopsError


class RestoreUsageError(AwopsError):
    """The command line cannot work, decided without asking AWS: exit 2, nothing touched."""


class RestoreRefused(AwopsError):
    """AWS' answers rule the restore out before anything was created: exit 1.

    ``reasons`` holds one line per finding (a target that exists, a table whose restore window
    misses the instant, a backup that does not exist), so the operator sees all of them at once.
    """

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


class PinRefused(AwopsError):
    """A pin or unpin that names no awops backup of this deployment: exit 1."""

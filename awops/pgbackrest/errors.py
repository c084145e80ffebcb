"""What goes wrong when awops drives pgBackRest and the servers it restores."""

from __future__ import annotations

from awops.errors import JobError


class PgBackRestError(JobError):
    """``pgbackrest`` could not be run, failed, or printed something awops cannot read."""


class ChildTimeout(PgBackRestError):
    """A child process ran past the time awops allows it; it was killed."""

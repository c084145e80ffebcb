"""The one exception hierarchy of awops.

Every error carries what an operator needs to act (job, table, file, key) and never a secret.
"""

from __future__ import annotations


class AwopsError(Exception):
    """Base class of every error awops raises on purpose."""


class ConfigError(AwopsError):
    """The configuration is invalid; nothing has been run.

    ``origin`` names where the value came from (``/etc/awops/awops.toml: jobs.pg-health.schedule``
    or ``environment PG_DB_PORT``), ``expected`` what would have been accepted.
    """

    def __init__(self, origin: str, expected: str, got: object = None) -> None:
        self.origin = origin
        self.expected = expected
        self.got = got
        message = f"{origin}: expected {expected}"
        if got is not None:
            message += f", got {_describe(got)}"
        super().__init__(message)


class RegistryError(AwopsError):
    """A job was registered twice or looked up under a name that does not exist."""


class JobError(AwopsError):
    """A job could not do its work; becomes status ``error``."""


class BackendUnavailable(JobError):
    """The job's backend (PostgreSQL, DynamoDB, S3) could not be reached."""


class JobInterrupted(JobError):
    """A job stopped early: shutdown, a cancel (its lock lost) or its ``timeout_seconds``.

    Raised by ``JobContext.raise_if_stopping()``, which asks ``JobContext.should_stop()``: a
    job that can wind up with a partial result asks ``should_stop()`` itself instead.
    """


def first_line(error: BaseException | str) -> str:
    """The first line of an exception's message (or of a text), without the detail lines that
    drivers append (query, hint, context); an exception without a message gives its type's name.
    """
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

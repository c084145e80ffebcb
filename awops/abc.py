"""The base of every job and check: a public ``run()`` that guards, a ``_run()`` that works."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from awops.errors import AwopsError
from awops.result import Outcome, Status

if TYPE_CHECKING:
    from awops.config import Config
    from awops.context import JobContext

logger = logging.getLogger(__name__)

OptionsT = TypeVar("OptionsT")


@dataclass
class NoOptions:
    """For jobs that take nothing beyond the common keys."""


class Job(ABC, Generic[OptionsT]):
    """A unit of scheduled work, generic in its options (``class PgBackup(Job[PgBackupOptions])``).

    Subclasses set the class attributes and implement ``_run``. ``Options`` is a
    dataclass built with :func:`awops.settings.setting`, the class the job is generic in; its
    fields are the job's own keys under ``[jobs.<name>]`` and ``AWOPS_JOB_<NAME>_<KEY>``.
    """

    name: ClassVar[str]
    backend: ClassVar[str]  # "postgresql" or "dynamodb"
    description: ClassVar[str]
    default_schedule: ClassVar[str]
    default_enabled: ClassVar[bool] = True
    default_timeout_seconds: ClassVar[float] = 300.0
    changes_data: ClassVar[bool] = False
    # A class variable cannot name OptionsT; the options built from it are typed by the
    # parameter instead (``self.options``, ``unconfigured_reason``).
    Options: ClassVar[type[object]] = NoOptions
    # What a run reports while unconfigured_reason() gives a reason: skipped for a job that is
    # off until a key names what to check, error for one whose work an operator counts on (a
    # backup with nowhere to go must raise an alert, not pass unnoticed).
    unconfigured_status: ClassVar[Status] = Status.SKIPPED
    # Where to set what is missing: shown in the run's summary and by `awops config --check`.
    configure_hint: ClassVar[str] = ""

    @classmethod
    def unconfigured_reason(cls, options: OptionsT, config: Config) -> str | None:
        """Why the job, though enabled, has nothing to do; None if it has.

        ``options`` are the job's own keys, ``config`` the whole configuration (a backup's
        targets live in ``[backup]``). ``awops jobs`` shows the reason in place of the next
        run, a run reports it with :attr:`unconfigured_status`, and when that is ``error``
        ``awops config --check`` warns about it.
        """
        return None

    @classmethod
    def unconfigured_summary(cls, reason: str) -> str:
        """A run's summary for ``reason``: what is missing and where to set it."""
        what = "nothing to check" if cls.unconfigured_status is Status.SKIPPED else "cannot run"
        hint = f" ({cls.configure_hint})" if cls.configure_hint else ""
        return f"{what}: {reason}{hint}"

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.options: OptionsT = context.options

    def run(self) -> Outcome:
        """Run once; never raises. An exception becomes status ``error`` with its message.

        A job :meth:`unconfigured_reason` finds nothing to do for is not started.
        """
        try:
            config = self.context.config
            reason = self.unconfigured_reason(self.options, config)
            if reason is not None:
                return Outcome(self.unconfigured_status, self.unconfigured_summary(reason))
            outcome = self._run()
        except AwopsError as exc:
            # Expected failures are said once, in the result the runner logs.
            logger.debug("%s failed: %s", self.name, exc)
            outcome = Outcome.error(str(exc))
        except Exception as exc:
            logger.exception("%s failed unexpectedly", self.name)
            outcome = Outcome.error(f"{type(exc).__name__}: {exc}")
        if outcome.status is Status.ERROR and self.backend == "dynamodb":
            outcome.summary += _backend_choice_note(self.context.config)
        return outcome

    @abstractmethod
    def _run(self) -> Outcome:
        """Do the work and report it."""


def _backend_choice_note(config: Config) -> str:
    """Why DynamoDB is in use, when nothing chose it: most likely a PostgreSQL deployment
    that never said so, now failing on AWS credentials it never needed."""
    if not config.backends_by_default:
        return ""
    return (
        f" (DynamoDB is used because {config.backends_origin}; for PostgreSQL set "
        'DATABASE_BACKEND=postgresql or backends = ["postgresql"])'
    )

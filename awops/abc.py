"""The base of every job and check: a public ``run()`` that guards, a ``_run()`` that works."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from awops.errors import AwopsError
from awops.result import Outcome

if TYPE_CHECKING:
    from awops.context import JobContext

logger = logging.getLogger(__name__)


@dataclass
class NoOptions:
    """For jobs that take nothing beyond the common keys."""


class Job(ABC):
    """A unit of scheduled work.

    Subclasses set the class attributes and implement ``_run``. ``Options`` is a
    dataclass built with :func:`awops.settings.setting`; its fields are the job's own keys
    under ``[jobs.<name>]`` and ``AWOPS_JOB_<NAME>_<KEY>``.
    """

    name: ClassVar[str]
    backend: ClassVar[str]  # "postgresql" or "dynamodb"
    description: ClassVar[str]
    default_schedule: ClassVar[str]
    default_enabled: ClassVar[bool] = True
    default_timeout_seconds: ClassVar[float] = 300.0
    changes_data: ClassVar[bool] = False
    Options: ClassVar[type[Any]] = NoOptions

    @classmethod
    def unconfigured_reason(cls, options: Any) -> str | None:
        """Why the job, though enabled, has nothing to do under ``options``; None if it has.

        For jobs that are off until a key names what to check: ``awops jobs`` shows the reason
        in place of the next run, and the job reports it as ``skipped``.
        """
        return None

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.options: Any = context.options

    def run(self) -> Outcome:
        """Run once; never raises. An exception becomes status ``error`` with its message."""
        try:
            return self._run()
        except AwopsError as exc:
            logger.error("%s failed: %s", self.name, exc)
            return Outcome.error(str(exc))
        except Exception as exc:
            logger.exception("%s failed unexpectedly", self.name)
            return Outcome.error(f"{type(exc).__name__}: {exc}")

    @abstractmethod
    def _run(self) -> Outcome:
        """Do the work and report it."""

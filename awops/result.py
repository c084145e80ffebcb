"""What a job run produces: a status, a one-line summary and machine-readable details."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    PROBLEM = "problem"  # the job ran and found something wrong
    ERROR = "error"  # the job could not do its work
    SKIPPED = "skipped"  # disabled, backend not configured, or another replica holds the lock

    @property
    def is_failure(self) -> bool:
        return self in (Status.PROBLEM, Status.ERROR)


@dataclass
class Outcome:
    """What a job's ``_run`` returns; the runner adds the name and duration."""

    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, summary: str, **details: Any) -> Outcome:
        return cls(Status.OK, summary, details)

    @classmethod
    def problem(cls, summary: str, **details: Any) -> Outcome:
        return cls(Status.PROBLEM, summary, details)

    @classmethod
    def error(cls, summary: str, **details: Any) -> Outcome:
        return cls(Status.ERROR, summary, details)

    @classmethod
    def skipped(cls, summary: str, **details: Any) -> Outcome:
        return cls(Status.SKIPPED, summary, details)


@dataclass
class JobResult:
    job: str
    status: Status
    summary: str
    details: dict[str, Any]
    duration_seconds: float
    run_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "status": str(self.status),
            "duration_seconds": round(self.duration_seconds, 3),
            "summary": self.summary,
            "details": self.details,
        }

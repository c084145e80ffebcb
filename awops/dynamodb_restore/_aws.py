"""Small helpers the recovery modules share: AWS error text, times, waits and retries."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from awops.dynamodb import error_code, translated_errors
from awops.errors import JobError

logger = logging.getLogger(__name__)

T = TypeVar("T")

MISSING_CODES = frozenset({"ResourceNotFoundException", "TableNotFoundException"})
# Control-plane answers that mean "not now": the table is being updated, too many table
# operations run at once, or PITR cannot be switched on yet on a table this young.
TRANSIENT_CODES = frozenset(
    {"ResourceInUseException", "LimitExceededException", "ContinuousBackupsUnavailableException"}
)


def failure_text(exc: BaseException) -> str:
    """What went wrong, for an operator: AWS' code and message, or awops' own error text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        return f"{code}: {message}" if message else str(code or type(exc).__name__)
    if isinstance(exc, JobError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def is_missing(exc: BaseException) -> bool:
    return error_code(exc) in MISSING_CODES


def iso(epoch_seconds: float) -> str:
    """``2026-12-05T09:14:00Z``, with milliseconds only when the instant has them."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def describe_table_or_none(client: Any, name: str) -> dict[str, Any] | None:
    """``DescribeTable``'s ``Table``, or None when there is no such table."""
    with translated_errors(client, f"DescribeTable {name}"):
        try:
            table: dict[str, Any] = client.describe_table(TableName=name)["Table"]
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
    return table


def is_active(table: dict[str, Any]) -> bool:
    """The table and every one of its GSIs are ACTIVE: the next UpdateTable will be taken."""
    if table.get("TableStatus") != "ACTIVE":
        return False
    return all(
        index.get("IndexStatus", "ACTIVE") == "ACTIVE"
        for index in table.get("GlobalSecondaryIndexes", [])
    )


class Pacing:
    """The bounds of one piece of long work: a deadline (``time.monotonic()``), a stop
    request, and how often to look again."""

    def __init__(
        self,
        deadline: float,
        stop_event: threading.Event,
        poll_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deadline = deadline
        self.stop_event = stop_event
        self.poll_seconds = poll_seconds
        self.monotonic = monotonic

    def seconds_left(self) -> float:
        return self.deadline - self.monotonic()

    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def sleep(self, seconds: float) -> None:
        self.stop_event.wait(max(0.0, min(seconds, self.seconds_left())))

    def check(self, what: str) -> None:
        """Raise :class:`JobError` naming ``what`` once stopped or out of time."""
        if self.stopping():
            raise JobError(f"stopped before {what}: stop requested")
        if self.seconds_left() <= 0:
            raise JobError(f"out of time before {what} (timeout)")


def wait_active(client: Any, name: str, pacing: Pacing) -> dict[str, Any]:
    """Wait until ``name`` and its GSIs are ACTIVE; its description, or :class:`JobError`."""
    while True:
        table = describe_table_or_none(client, name)
        if table is None:
            raise JobError(f"table {name} does not exist")
        if is_active(table):
            return table
        pacing.check(f"{name} became ACTIVE (status {table.get('TableStatus')})")
        pacing.sleep(pacing.poll_seconds)


def with_retries(
    call: Callable[[], T], what: str, pacing: Pacing, codes: frozenset[str] = TRANSIENT_CODES
) -> T:
    """``call()``, again with backoff while AWS answers one of ``codes``, within ``pacing``."""
    delay = min(1.0, pacing.poll_seconds)
    while True:
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) not in codes:
                raise
            pacing.check(f"{what} ({error_code(exc)})")
            logger.info("%s: %s, trying again in %.0f s", what, error_code(exc), delay)
            pacing.sleep(delay)
            delay = min(delay * 2, 30.0)

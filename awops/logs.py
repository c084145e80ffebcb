"""Logging: readable text on a terminal, JSON lines with ``AWOPS_LOG_FORMAT=json``.

Every line written during a job run carries the job name and run id (from context variables
the runner sets), every line passes a filter that masks configured secrets, and a warning or
error repeated word for word is written once, then counted (:class:`RepeatFilter`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

current_job: contextvars.ContextVar[str] = contextvars.ContextVar("awops_job", default="")
current_run_id: contextvars.ContextVar[str] = contextvars.ContextVar("awops_run_id", default="")

MASK = "********"


@contextmanager
def job_log_context(job: str, run_id: str) -> Iterator[None]:
    job_token = current_job.set(job)
    run_token = current_run_id.set(run_id)
    try:
        yield
    finally:
        current_job.reset(job_token)
        current_run_id.reset(run_token)


class SecretScrubber:
    """Replaces every known secret in a text; shared by log filters and error messages."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def scrub_value(self, value: Any) -> Any:
        """``value`` with every string in it scrubbed, keys included, through dicts, lists and
        tuples (a job's details); numbers, booleans and None are kept, anything else becomes
        its scrubbed text, as JSON would show it."""
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {
                self.scrub(key) if isinstance(key, str) else key: self.scrub_value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub_value(item) for item in value]
        return self.scrub(str(value))


class _ContextFilter(logging.Filter):
    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        setattr(record, "job", current_job.get())  # noqa: B010 - LogRecord has no such slot
        setattr(record, "run_id", current_run_id.get())  # noqa: B010
        message = self.scrubber.scrub(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.scrubber.scrub(formatted)
            record.exc_info = None
        return True


# A repeated warning is written again, with its count, at most this often.
REPEAT_INTERVAL_SECONDS = 300.0


class RepeatFilter(logging.Filter):
    """Writes a warning or error the first time, then drops the same one (same logger, level,
    job and text) until ``interval_seconds`` have passed; the next one after that is written
    with how often it was dropped: ``... (repeated 12 times in 300 s)``.

    A server that stays down then costs a line per interval, not one per retry. Lower levels
    pass untouched. Runs after the scrubber, so the text compared is the one written.
    """

    MAX_KEYS = 256  # the oldest is forgotten first

    def __init__(
        self,
        interval_seconds: float = REPEAT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self.clock = clock
        # key -> (when last written, how many dropped since)
        self._seen: OrderedDict[tuple[str, int, str, str], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        key = (record.name, record.levelno, str(getattr(record, "job", "")), message)
        now = self.clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval_seconds:
                self._seen[key] = (last[0], last[1] + 1)
                return False
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self.MAX_KEYS:
                self._seen.popitem(last=False)
        if last is not None and last[1]:
            elapsed = now - last[0]
            times = "time" if last[1] == 1 else "times"
            record.msg = f"{message} (repeated {last[1]} {times} in {elapsed:.0f} s)"
            record.args = None
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        job = getattr(record, "job", "")
        where = f" [{job} {getattr(record, 'run_id', '')}]" if job else ""
        line = f"{stamp}Z {record.levelname:<7} {record.name}{where}: {record.getMessage()}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "job", ""):
            document["job"] = getattr(record, "job", "")
            document["run_id"] = getattr(record, "run_id", "")
        if record.exc_text:
            document["exc"] = record.exc_text
        return json.dumps(document, ensure_ascii=False)


_handler: logging.Handler | None = None
scrubber = SecretScrubber()


def setup_logging(fmt: str = "text", level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Install awops' one handler on the root logger (idempotent; SIGHUP may call it again)."""
    global _handler
    stream = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter(scrubber))
    handler.addFilter(RepeatFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries' chatter stays out unless asked for.
    for noisy in ("botocore", "boto3", "urllib3", "apscheduler.executors", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    _handler = handler

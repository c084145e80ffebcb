"""pg_restore's progress, read from its ``--verbose`` lines and logged at a bounded rate.

pg_restore says what it does, one line per step: ``creating TABLE "public.actors"`` (the
schema), ``processing data for table "public.attributes"`` (the data), ``creating INDEX``
and ``creating CONSTRAINT`` (indexes and constraints, after the data), ``finished item``
in a parallel restore. A change of phase is logged when it happens; otherwise one line per
interval says how many entries are done and what pg_restore is working on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

_PREFIX = re.compile(r"^(?:pg_restore:\s*)+")
_CREATING = re.compile(r"^creating (?P<what>[A-Z][A-Z ]*?) \"(?P<name>.*)\"$")
_DATA = re.compile(r"^processing data for table \"(?P<name>.*)\"$")
_FINISHED = re.compile(r"^finished item (?P<id>\d+) ")
_PROCESSING = re.compile(r"^processing item \d+ ")
_POST_DATA = ("INDEX", "CONSTRAINT", "FK CONSTRAINT", "TRIGGER", "RULE", "POLICY")

SCHEMA, DATA, POST_DATA = "schema", "data", "indexes and constraints"


class RestoreProgress:
    """Fed pg_restore's stderr lines (from its reader thread); logs and remembers the phase."""

    def __init__(
        self,
        total_entries: int,
        interval_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_finished: Callable[[int], None] = lambda dump_id: None,
    ) -> None:
        self.total_entries = total_entries
        self._on_finished = on_finished
        self.interval_seconds = interval_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last_logged = monotonic()
        self.phase = ""
        self.phases_seen: list[str] = []
        self.done_entries = 0
        self.tables_started = 0
        self.current = ""
        self.warnings: list[str] = []

    def feed(self, raw_line: str) -> None:
        """One line of pg_restore's stderr."""
        line = _PREFIX.sub("", raw_line).strip()
        if not line:
            return
        with self._lock:
            self._read(line)

    def _read(self, line: str) -> None:
        if line.startswith(("error:", "warning:")) or "error:" in line:
            self.warnings.append(line)
            logger.warning("pg_restore: %s", line)
            return
        creating = _CREATING.match(line)
        data = _DATA.match(line)
        if data:
            self.tables_started += 1
            self.current = f"data of {data['name']}"
            self._enter(DATA)
        elif creating:
            what = creating["what"]
            self.current = f"{what} {creating['name']}"
            # Constraints and indexes are created after the data, whatever the entry.
            self._enter(POST_DATA if what in _POST_DATA and self.phase else SCHEMA)
        finished = _FINISHED.match(line)
        if finished:
            self._on_finished(int(finished["id"]))
        if finished or _PROCESSING.match(line):
            self.done_entries += 1
        now = self._monotonic()
        if now - self._last_logged >= self.interval_seconds:
            self._last_logged = now
            logger.info(
                "pg_restore: %s; %d of %d entries; %d tables' data started; now %s",
                self.phase or "starting",
                min(self.done_entries, self.total_entries),
                self.total_entries,
                self.tables_started,
                self.current or "-",
            )

    def _enter(self, phase: str) -> None:
        if phase == self.phase:
            return
        # The phases only move forward: a parallel restore loads one table's data while
        # it builds another's index; that is not a return to the data phase.
        order = (SCHEMA, DATA, POST_DATA)
        if self.phase and order.index(phase) < order.index(self.phase):
            return
        self.phase = phase
        self.phases_seen.append(phase)
        self._last_logged = self._monotonic()
        logger.info("pg_restore: %s (%s)", phase, self.current)

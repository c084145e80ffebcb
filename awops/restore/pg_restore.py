"""One ``pg_restore`` into the target database, followed by counting what it restored.

pg_restore runs with ``--verbose`` (its lines feed the progress log), ``--exit-on-error``
(the first failure ends it) and ``--no-password``: the password is in its environment. The
database is named by a conninfo string, so a name holding ``=`` is still a name.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from psycopg.conninfo import make_conninfo

from awops.backup.dump import client_environment
from awops.restore.children import ChildProcess
from awops.restore.counting import RowCounter
from awops.restore.database import Server
from awops.restore.progress import RestoreProgress
from awops.restore.request import RestoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class PgRestoreRun:
    """What pg_restore is asked to do; :meth:`run` does it."""

    program: str
    archive: Path
    database: str
    jobs: int
    keep_owner: bool = False  # else --no-owner --no-privileges
    clean: bool = False  # --clean --if-exists: the database held tables (--replace)
    list_file: Path | None = None  # --use-list: chosen tables
    seconds: float = 0.0
    count_seconds: float = 0.0  # counting what was left once pg_restore exited
    phases: Sequence[str] = ()

    def command(self) -> list[str]:
        command = [
            self.program,
            "--verbose",
            "--exit-on-error",
            "--no-password",
            f"--jobs={self.jobs}",
            f"--dbname={make_conninfo(dbname=self.database)}",
        ]
        if not self.keep_owner:
            command += ["--no-owner", "--no-privileges"]
        if self.clean:
            command += ["--clean", "--if-exists"]
        if self.list_file is not None:
            command.append(f"--use-list={self.list_file}")
        command.append(str(self.archive))
        return command

    def run(
        self,
        server: Server,
        entries: int,
        counter: RowCounter,
        then: Callable[[Any, dict[str, int]], T],
        progress_interval_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> T:
        """Restore, counting each table's rows as soon as pg_restore is done with it, then
        ``then(session, counts)``."""
        env = client_environment(server.libpq_environment())
        progress = RestoreProgress(
            entries, progress_interval_seconds, monotonic, on_finished=counter.finished
        )
        logger.info("pg_restore -j %d into %s: %d entries", self.jobs, self.database, entries)
        started = monotonic()
        with (
            ChildProcess(self.command(), env, server.stop, on_line=progress.feed) as child,
            contextlib.ExitStack() as sessions,
        ):
            # The sessions that count the rows open while pg_restore works: their
            # authentication then adds nothing to the restore's time.
            counters = [
                sessions.enter_context(server.connect(self.database)) for _ in range(self.jobs)
            ]
            sessions.callback(counter.close)
            counter.start(counters)
            returncode = child.wait()
            server.stop.check()
            if returncode != 0:
                raise RestoreError(f"pg_restore failed (exit {returncode}): {child.errors()}")
            self.seconds = monotonic() - started
            self.phases = list(progress.phases_seen)
            logger.info("pg_restore finished in %.1f s: %d entries", self.seconds, entries)
            counts = counter.result(counters)
            self.count_seconds = monotonic() - started - self.seconds
            logger.info(
                "rows of %d tables counted, %d while pg_restore worked; %.1f s after it",
                len(counts),
                counter.counted_early,
                self.count_seconds,
            )
            return then(counters[0], counts)

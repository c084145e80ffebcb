"""A job for the replica benchmark: every run writes a row, so runs are counted in the database.

Imported by the replica processes before awops' CLI, which registers it beside the built-in
jobs. Each run records the slot it holds the lock for (read back from the lock table), its
process, and when it started and finished by the database's clock, then works for
``run_seconds`` so a replica can be killed mid-run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from awops.abc import Job
from awops.registry import register
from awops.result import Outcome
from awops.settings import setting

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_runs (
    run_id text NOT NULL,
    slot double precision NOT NULL,
    pid integer NOT NULL,
    started timestamptz NOT NULL,
    finished timestamptz,
    PRIMARY KEY (run_id, pid)
)"""


@dataclass
class RecorderOptions:
    run_seconds: float = setting(0.5, minimum=0, doc="how long each run works")


@register
class SlotRecorder(Job[RecorderOptions]):
    name = "bench-recorder"
    backend = "postgresql"
    description = "benchmark only: writes one row per run"
    default_schedule = "every 2s"
    default_enabled = False
    changes_data = True
    Options = RecorderOptions

    def _run(self) -> Outcome:
        run_id = self.context.run_id
        with self.context.pg.connection() as conn:
            row = conn.execute(
                "SELECT last_slot FROM awops_locks WHERE job = %s", [self.name]
            ).fetchone()
            slot = row[0] if row else -1.0
            conn.execute(
                "INSERT INTO bench_runs (run_id, slot, pid, started)"
                " VALUES (%s, %s, %s, clock_timestamp())",
                [run_id, slot, os.getpid()],
            )
            deadline = time.monotonic() + self.options.run_seconds
            while time.monotonic() < deadline:
                self.context.raise_if_stopping()
                time.sleep(0.02)
            conn.execute(
                "UPDATE bench_runs SET finished = clock_timestamp() WHERE run_id = %s AND pid = %s",
                [run_id, os.getpid()],
            )
        return Outcome.ok(f"recorded slot {slot}", slot=slot)

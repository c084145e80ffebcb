"""Scratch databases of ``pg-backup-verify``: who made each one, and which are left over.

A verify run creates ``awops_verify_<UTC time>_<run id>``, notes in ``COMMENT ON DATABASE``
which process made it, and keeps a session connected to it until it drops it. A later run
drops a scratch database left by a run that died (SIGKILL, a lost host) when

* its creator ran on this host, in this PID namespace, since this boot, and that process is
  gone (the pid is free or now another process: its start time differs); or
* its creator cannot be checked from here (another replica, an older awops), no session is
  connected to it and it is older than :data:`STALE_GRACE_SECONDS` (a live run always holds
  one; the grace covers the moment between creating it and connecting); or
* it is older than :data:`STALE_SECONDS` whatever else (a host lost without closing its
  connections keeps them open until TCP keepalive gives up).

A live run's scratch database, on this host or another replica's, is never dropped.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = "awops_verify_"
STALE_SECONDS = 86400.0
STALE_GRACE_SECONDS = 600.0
_STAMP_FORMAT = "%Y%m%d%H%M%S"
_COMMENT = re.compile(
    r"^awops pg-backup-verify scratch database; creator host=(?P<host>\S*) "
    r"boot=(?P<boot>\S+) pidns=(?P<pidns>\S+) pid=(?P<pid>\d+) start=(?P<start>\d+)$"
)


@dataclass(frozen=True)
class Creator:
    """A process, identified beyond its pid: the boot, the PID namespace and its start time."""

    host: str
    boot: str
    pidns: str
    pid: int
    start: int

    @classmethod
    def current(cls, proc: Path = Path("/proc")) -> Creator | None:
        """This process, or None where ``/proc`` does not tell (not Linux)."""
        pid = os.getpid()
        try:
            boot = (proc / "sys/kernel/random/boot_id").read_text().strip()
            pidns = os.readlink(proc / "self/ns/pid")
            start = _start_time(proc, pid)
        except (OSError, ValueError, IndexError):
            return None
        if start is None:
            return None
        return cls(socket.gethostname() or "-", boot, pidns.replace(" ", ""), pid, start)

    def comment(self) -> str:
        return (
            f"awops pg-backup-verify scratch database; creator host={self.host} "
            f"boot={self.boot} pidns={self.pidns} pid={self.pid} start={self.start}"
        )

    @classmethod
    def parse(cls, comment: str | None) -> Creator | None:
        match = _COMMENT.match(comment or "")
        if match is None:
            return None
        return cls(
            match["host"], match["boot"], match["pidns"], int(match["pid"]), int(match["start"])
        )


def _start_time(proc: Path, pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it is not running (no such
    process, or a zombie: dead, waiting for its parent to reap it)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None
    # Fields 3 (state) and 22; the command name (field 2) may hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def creator_running(
    creator: Creator, here: Creator | None, proc: Path = Path("/proc")
) -> bool | None:
    """Whether ``creator`` still runs; None when that cannot be told from here.

    The same boot and PID namespace (the host name is for people: containers may share one)
    mean its pid is visible here; a pid now free, or held by a process started at another
    time, means it is gone.
    """
    if here is None or (creator.boot, creator.pidns) != (here.boot, here.pidns):
        return None  # another host, container or boot: its processes are not visible here
    try:
        return _start_time(proc, creator.pid) == creator.start
    except (OSError, ValueError, IndexError):
        return None


def scratch_name(clock_seconds: float, run_id: str) -> str:
    stamp = datetime.fromtimestamp(clock_seconds, UTC).strftime(_STAMP_FORMAT)
    return f"{SCRATCH_PREFIX}{stamp}_{run_id}"


def created_at(name: str) -> float | None:
    """When a scratch database was made, from its name; None for a name awops did not give."""
    stamp = name[len(SCRATCH_PREFIX) :].split("_", 1)[0]
    try:
        return datetime.strptime(stamp, _STAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def leftovers(admin: Any, now: float) -> list[tuple[str, str]]:
    """``(name, why)`` of every scratch database a run that died left behind."""
    rows = admin.execute(
        "SELECT d.datname, shobj_description(d.oid, 'pg_database'),"
        " (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)"
        " FROM pg_database d WHERE starts_with(d.datname, %s) ORDER BY 1",
        (SCRATCH_PREFIX,),
    ).fetchall()
    here = Creator.current()
    found = []
    for name, comment, sessions in rows:
        made = created_at(name)
        if made is None:
            continue  # not a name awops gave
        age = now - made
        creator = Creator.parse(comment)
        running = None if creator is None else creator_running(creator, here)
        if creator is not None and running is False:
            found.append((name, f"its creator, pid {creator.pid} on this host, is gone"))
        elif age >= STALE_SECONDS:
            found.append((name, f"created {age / 3600:.0f} h ago"))
        elif running is None and sessions == 0 and age >= STALE_GRACE_SECONDS:
            found.append((name, f"no session connected, created {age / 60:.0f} min ago"))
    return found

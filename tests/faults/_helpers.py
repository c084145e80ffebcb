"""What the fault tests share: awops started as a process, data that a purge must and must not
delete, and waits."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from tests.fix_awops import clean_environ
from tests.fix_pg import PgDatabase

KEEP_ROWS = 300  # rows with NULL or future ttl_timestamp: a purge must never touch them


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "awops", *args],
        env=clean_environ(env),
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
    )


def fill_attributes(db: PgDatabase, expired: int) -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, data, ttl_timestamp)"
            " SELECT 'x' || g, 'b' || g, 'b', 'n', jsonb_build_object('pad', md5(g::text)),"
            " extract(epoch FROM now())::bigint - 3600 - g FROM generate_series(1, %s) g",
            [expired],
        )
        conn.execute(
            "INSERT INTO attributes (id, bucket_name, bucket, name, ttl_timestamp)"
            " SELECT 'k' || g, 'b' || g, 'b', 'n',"
            " CASE WHEN g %% 2 = 0 THEN NULL ELSE extract(epoch FROM now())::bigint + 86400 END"
            " FROM generate_series(1, %s) g",
            [KEEP_ROWS],
        )


def counts(db: PgDatabase) -> tuple[int, int]:
    """(expired rows left, rows that must be kept)."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE id LIKE 'x%%'), count(*) FILTER (WHERE id LIKE 'k%%')"
            " FROM attributes"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _processes() -> dict[int, tuple[str, int, str]]:
    """pid -> (command name, parent pid, state) of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        found[int(entry.name)] = (comm, int(ppid), state)
    return found


def descendant_pids(ancestor: int) -> dict[int, str]:
    """pid -> command name of every live process descended from ``ancestor`` (from /proc)."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(ancestor, []))
    while todo:
        pid = todo.pop()
        comm, _, state = processes[pid]
        if state not in ("Z", "X"):
            found[pid] = comm
        todo.extend(children.get(pid, []))
    return found


def child_pids(parent: int, name: str) -> list[int]:
    """Processes named ``name`` descended from ``parent`` (awops runs programs under a guard)."""
    return [pid for pid, comm in descendant_pids(parent).items() if comm == name]


def alive(pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` still running: neither gone nor a zombie waiting to be reaped."""
    processes = _processes()
    return [pid for pid in pids if pid in processes and processes[pid][2] not in ("Z", "X")]


def backups_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []

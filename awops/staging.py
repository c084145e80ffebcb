"""Staging directories for fetched dumps, and those a killed awops left behind.

A verify, a check or a restore fetches a dump (decrypted, when it is age-encrypted) into a
directory of its own under the work directory and removes it when it ends. A process killed
by SIGKILL or the OOM killer cannot: a copy of the dump, in plain text and as large as the
dump, would stay until someone noticed, and the next run might find no room. So each such
directory is named after the process that made it (its pid and the time it started), and
the next one made under the same prefix first removes those whose process is gone. A pid
alone would not do: in a container awops is pid 1 on every start.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from awops.children import process_alive

logger = logging.getLogger(__name__)


def staging_directory(prefix: str, work_dir: str | Path = "") -> tempfile.TemporaryDirectory[str]:
    """A new directory ``<prefix><process>-<random>`` under ``work_dir`` (else the system's
    temporary directory), removed when the ``with`` block ends; the ones a dead process left
    there under ``prefix`` are removed first."""
    parent = Path(work_dir or tempfile.gettempdir())
    remove_stale(parent, prefix)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{_this_process()}-", dir=parent)


def remove_stale(parent: Path, prefix: str) -> list[str]:
    """Remove the directories under ``parent`` that ``prefix`` names and whose process is
    gone; their names."""
    name = re.compile(rf"^{re.escape(prefix)}(\d+)\.(\d+)-[A-Za-z0-9_]+$")
    removed: list[str] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed  # the caller's own use of the directory says what is wrong with it
    for path in entries:
        match = name.match(path.name)
        if match is None or path.is_symlink() or not path.is_dir():
            continue
        if _started(int(match[1])) == int(match[2]):
            continue  # its process still runs (this one, or another awops)
        logger.warning("removing %s, left by an awops process that died", path)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def _this_process() -> str:
    return f"{os.getpid()}.{_started(os.getpid()) or 0}"


def _started(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when no such process runs.

    Where /proc is missing, a live pid is taken to be the same process (start time 0)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        return 0 if process_alive(pid) else None
    except OSError:
        return None
    # The command name (in parentheses) may hold spaces: the fields after it are counted.
    fields = stat.rpartition(")")[2].split()
    return int(fields[19])  # field 22 of proc(5): starttime

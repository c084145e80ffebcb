"""Which scratch databases of pg-backup-verify a later run drops, on a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator

import pytest

from awops.backup.scratch import (
    STALE_GRACE_SECONDS,
    STALE_SECONDS,
    Creator,
    leftovers,
    scratch_name,
)
from tests.fix_pg import PgCluster


@pytest.fixture
def scratch(pg_cluster: PgCluster) -> Iterator[dict[str, str]]:
    """Creates scratch databases by role; drops them all afterwards."""
    made: dict[str, str] = {}
    yield made
    with pg_cluster.connect(autocommit=True) as conn:
        for name in made.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_only_what_dead_runs_left_behind_is_named(
    pg_cluster: PgCluster, scratch: dict[str, str]
) -> None:
    here = Creator.current()
    assert here is not None, "/proc tells this process's identity on Linux"
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid is free, or soon another process's
    dead_here = dataclasses.replace(here, pid=ended.pid)
    elsewhere = dataclasses.replace(here, host="replica-2", boot="another-boot")
    now = time.time()
    young, past_grace = now - 60, now - STALE_GRACE_SECONDS - 60
    cases = {
        # role: (created at, creator in COMMENT ON DATABASE, a session connected)
        "dead-here": (young, dead_here, False),
        "alive-here": (past_grace, here, False),
        "elsewhere-in-use": (past_grace, elsewhere, True),
        "elsewhere-idle-young": (young, elsewhere, False),
        "elsewhere-idle-old": (past_grace, elsewhere, False),
        "no-comment-idle-old": (past_grace, None, False),
        "a-day-old-in-use": (now - STALE_SECONDS - 60, elsewhere, True),
    }
    sessions = []
    with pg_cluster.connect(autocommit=True) as admin:
        for n, (role, (created, creator, in_use)) in enumerate(cases.items()):
            name = scratch_name(created, f"{n:08x}")
            scratch[role] = name
            admin.execute(f'CREATE DATABASE "{name}"')
            if creator is not None:
                admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{creator.comment()}'")
            if in_use:
                sessions.append(pg_cluster.connect(name))
        try:
            found = dict(leftovers(admin, now))
        finally:
            for session in sessions:
                session.close()
    named = {role for role, name in scratch.items() if name in found}
    assert named == {"dead-here", "elsewhere-idle-old", "no-comment-idle-old", "a-day-old-in-use"}
    assert "is gone" in found[scratch["dead-here"]]


def test_a_comment_round_trips_and_a_foreign_one_is_ignored() -> None:
    here = Creator.current()
    assert here is not None
    assert Creator.parse(here.comment()) == here
    assert Creator.parse("restored by hand") is None
    assert Creator.parse(None) is None

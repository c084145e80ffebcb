"""The blocking chain: the session waiting longest for a lock, who blocks it, and for how long.

Sessions are named by pid, backend type and state, never by their query text: that may hold
application data. ``pg_blocking_pids()`` names the blockers; the chain is followed from the
first blocker through any session that itself waits, to the one at its head. The wait is
measured from ``pg_locks.waitstart`` (PostgreSQL 14+); on PostgreSQL 13 from the start of the
waiting statement, an upper bound, and ``details`` says which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.checks.pg_health.queries import Connection
    from awops.metrics import MetricsBase

_MAX_CHAIN = 16  # how far the chain is followed; a deadlock is a cycle until detected


class Session(NamedTuple):
    pid: int
    backend_type: str | None
    state: str | None
    transaction_seconds: float | None
    waiting: bool  # waits on a lock itself
    blocked_by: list[int]  # 0: a prepared transaction

    def describe(self) -> str:
        kind = "" if self.backend_type in (None, "client backend") else f"{self.backend_type}, "
        held = (
            ""
            if self.transaction_seconds is None
            else f", transaction open {self.transaction_seconds:.1f} s"
        )
        return f"pid {self.pid} ({kind}{self.state or 'state unknown'}{held})"

    def as_details(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "backend_type": self.backend_type,
            "state": self.state,
            "transaction_seconds": _rounded(self.transaction_seconds),
            "waiting_on_lock": self.waiting,
        }


class Wait(NamedTuple):
    pid: int
    lock: str  # "AccessExclusiveLock on relation actors", "ShareLock on transactionid"
    wait_seconds: float


class BlockingChain(NamedTuple):
    waiting_sessions: int  # of every backend type, the check's own left out
    measured_from: str  # lock_wait_start (PostgreSQL 14+) or statement_start
    longest: Wait | None = None
    waiter: Session | None = None
    blockers: tuple[Session, ...] = ()
    head: Session | None = None  # the chain's head, when it is not a direct blocker


_SESSIONS = """
SELECT pid, backend_type, state,
       extract(epoch FROM clock_timestamp() - xact_start)::float8,
       wait_event_type = 'Lock',
       CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
"""
# Relation names only for the current database: an OID means nothing in another one.
_WAITS = """
SELECT l.pid, l.mode, l.locktype,
       CASE WHEN l.database = d.oid THEN c.relname END,
       extract(epoch FROM clock_timestamp() - {since})::float8
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
CROSS JOIN (SELECT oid FROM pg_database WHERE datname = current_database()) d
LEFT JOIN pg_class c ON c.oid = l.relation
WHERE NOT l.granted AND l.pid <> pg_backend_pid()
"""
_WAITS_SINCE_LOCK = _WAITS.format(since="coalesce(l.waitstart, clock_timestamp())")
_WAITS_SINCE_STATEMENT = _WAITS.format(since="a.query_start")  # no waitstart before 14


def read_blocking_chain(conn: Connection, version_num: int) -> BlockingChain:
    if version_num >= 140000:
        waits_query, measured_from = _WAITS_SINCE_LOCK, "lock_wait_start"
    else:
        waits_query, measured_from = _WAITS_SINCE_STATEMENT, "statement_start"
    sessions = {
        pid: Session(pid, backend_type, state, xact_seconds, bool(waiting), list(blockers or []))
        for pid, backend_type, state, xact_seconds, waiting, blockers in conn.execute(_SESSIONS)
    }
    if not any(session.waiting for session in sessions.values()):
        return BlockingChain(0, measured_from)  # the usual case: pg_locks is left alone
    waits = [
        Wait(pid, f"{mode} on {locktype}" + (f" {relation}" if relation else ""), seconds or 0.0)
        for pid, mode, locktype, relation, seconds in conn.execute(waits_query)
    ]
    waiting = len({w.pid for w in waits})
    longest = max(waits, key=lambda w: w.wait_seconds) if waits else None
    waiter = sessions.get(longest.pid) if longest else None
    if longest is None or waiter is None:  # none waits, or it ended between the two queries
        return BlockingChain(waiting, measured_from, longest)
    blockers = tuple(_session(sessions, pid) for pid in waiter.blocked_by)
    # Follow the first blocker while it waits itself: the head is what to end or fix.
    seen, current = {waiter.pid}, blockers[0] if blockers else None
    for _ in range(_MAX_CHAIN):
        if current is None or not current.waiting or not current.blocked_by:
            break
        seen.add(current.pid)
        following = current.blocked_by[0]
        if following in seen:
            break
        current = _session(sessions, following)
    head = current if current is not None and current.pid != blockers[0].pid else None
    return BlockingChain(waiting, measured_from, longest, waiter, blockers, head)


def _session(sessions: dict[int, Session], pid: int) -> Session:
    if pid in sessions:
        return sessions[pid]
    state = "prepared transaction" if pid == 0 else "ended"
    return Session(pid, None, state, None, False, [])


class BlockingFigures:
    """Records the blocking chain against ``max_lock_wait_seconds``; one per run."""

    def __init__(self, metrics: MetricsBase, options: PgHealthOptions, findings: Findings) -> None:
        self.options, self.findings = options, findings
        self.longest_wait = metrics.series(catalogue.PG_LONGEST_LOCK_WAIT)

    def unreadable(self) -> None:
        self.longest_wait.set(float("nan"))

    def record(self, chain: BlockingChain | None) -> None:
        if chain is None:
            self.unreadable()
            return
        limit = self.options.max_lock_wait_seconds
        waited = chain.longest.wait_seconds if chain.longest else 0.0
        self.longest_wait.set(waited)
        report: dict[str, Any] = {
            "waiting_sessions": chain.waiting_sessions,
            "longest_lock_wait_seconds": round(waited, 3),
            "max_lock_wait_seconds": limit,
            "wait_measured_from": chain.measured_from,
            "waiting": None,
            "blocked_by": [session.as_details() for session in chain.blockers],
            "chain_head": chain.head.as_details() if chain.head else None,
        }
        if chain.longest and chain.waiter:
            report["waiting"] = {
                **chain.waiter.as_details(),
                "wait_seconds": round(waited, 3),
                "lock": chain.longest.lock,
            }
        self.findings.details["blocking"] = report
        if chain.longest is None or chain.waiter is None or waited <= limit:
            return
        blockers = ", ".join(session.describe() for session in chain.blockers) or "nobody named"
        head = f", behind {chain.head.describe()} at the head of the chain" if chain.head else ""
        self.findings.problems.append(
            f"{chain.waiter.describe()} waiting {waited:.1f} s for {chain.longest.lock}, "
            f"blocked by {blockers}{head}, above max_lock_wait_seconds {limit:g}"
        )


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)

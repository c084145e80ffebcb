"""Server-wide figures of ``pg-health``: sessions, replication lag, wraparound, size, and the
database's deadlock and recovery-conflict counters."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.checks.pg_health import queries
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.metrics import MetricsBase

SESSION_FIGURES = ("longest_transaction", "idle_in_transaction", "lock_waiting_sessions")


class ServerFigures:
    """Records the server's figures against their thresholds; one per run."""

    def __init__(
        self,
        metrics: MetricsBase,
        options: PgHealthOptions,
        findings: Findings,
        memory: dict[str, Any],
    ) -> None:
        """``memory`` outlives the run: the counters as the previous run read them."""
        self.options, self.findings, self.memory = options, findings, memory
        g = metrics.series
        self.up = g(catalogue.PG_UP)
        self.ping = g(catalogue.PG_PING)
        self.connections = g(catalogue.PG_CONNECTIONS)
        self.max_connections = g(catalogue.PG_MAX_CONNECTIONS)
        self.longest_transaction = g(catalogue.PG_LONGEST_TRANSACTION)
        self.idle_in_transaction = g(catalogue.PG_IDLE_IN_TRANSACTION)
        self.lock_waiting = g(catalogue.PG_LOCK_WAITING)
        self.in_recovery = g(catalogue.PG_IN_RECOVERY)
        self.replication_lag = g(catalogue.PG_REPLICATION_LAG)
        self.xid_age = g(catalogue.PG_XID_AGE)
        self.multixact_age = g(catalogue.PG_MULTIXACT_AGE)
        self.database_size = g(catalogue.PG_DATABASE_SIZE)
        self.deadlocks = g(catalogue.PG_DEADLOCKS)
        self.conflicts = g(catalogue.PG_CONFLICTS)

    def ping_seconds(self, seconds: float) -> None:
        limit = self.options.max_ping_seconds
        self.ping.set(seconds)
        self.findings.details["ping_seconds"] = round(seconds, 6)
        self.findings.details["max_ping_seconds"] = limit
        if seconds > limit:
            self.findings.problems.insert(
                0, f"ping {seconds * 1000:.0f} ms above max_ping_seconds {limit:g}"
            )

    def sessions(
        self, facts: queries.ServerFacts | None, sessions: queries.Sessions | None
    ) -> None:
        opts, details, problems = self.options, self.findings.details, self.findings.problems
        if facts is None or sessions is None:
            self._sessions_unreadable("sessions unreadable")
            return
        for state, count in sessions.by_state.items():
            self.connections.labels(state=state).set(count)
        self.max_connections.set(facts.max_connections)
        ratio = sessions.total / facts.max_connections
        details["connections"] = dict(sessions.by_state)
        details.update(
            connections_total=sessions.total,
            max_connections=facts.max_connections,
            connections_ratio=round(ratio, 4),
            max_connections_ratio=opts.max_connections_ratio,
        )
        if ratio > opts.max_connections_ratio:
            problems.append(
                f"{sessions.total} of max_connections {facts.max_connections} in use "
                f"({ratio:.0%}), above max_connections_ratio {opts.max_connections_ratio:g}"
            )
        if not facts.reads_all_stats:
            # Other roles' sessions show no state or start times without pg_read_all_stats.
            self._sessions_unreadable("other roles' sessions need pg_monitor")
            return
        self._session_age(
            "transaction open",
            self.longest_transaction,
            "longest_transaction",
            sessions.longest_transaction_seconds,
            sessions.longest_transaction_pid,
            "max_transaction_seconds",
            opts.max_transaction_seconds,
        )
        self._session_age(
            "session idle in transaction",
            self.idle_in_transaction,
            "idle_in_transaction",
            sessions.longest_idle_in_transaction_seconds,
            sessions.longest_idle_in_transaction_pid,
            "max_idle_in_transaction_seconds",
            opts.max_idle_in_transaction_seconds,
        )
        self.lock_waiting.set(sessions.lock_waiting)
        details.update(
            lock_waiting_sessions=sessions.lock_waiting,
            max_lock_waiting_sessions=opts.max_lock_waiting_sessions,
        )
        if sessions.lock_waiting > opts.max_lock_waiting_sessions:
            problems.append(
                f"{sessions.lock_waiting} sessions waiting on locks, above "
                f"max_lock_waiting_sessions {opts.max_lock_waiting_sessions}"
            )

    def _sessions_unreadable(self, reason: str) -> None:
        for gauge in (self.longest_transaction, self.idle_in_transaction, self.lock_waiting):
            gauge.set(math.nan)
        for figure in SESSION_FIGURES:
            self.findings.mark_unavailable(figure, reason)

    def recovery(self, in_recovery: bool) -> None:
        self.in_recovery.set(1 if in_recovery else 0)
        self.findings.details["in_recovery"] = in_recovery
        if not in_recovery:
            self.replication_lag.set(0)

    def lag(self, lag: float | None) -> None:
        limit = self.options.max_replication_lag_seconds
        if lag is None:
            self.replication_lag.set(math.nan)
            self.findings.mark_unavailable(
                "replication_lag", "WAL outstanding but nothing replayed yet"
            )
            return
        self.replication_lag.set(lag)
        self.findings.details["replication_lag_seconds"] = round(lag, 3)
        self.findings.details["max_replication_lag_seconds"] = limit
        if lag > limit:
            self.findings.problems.append(
                f"replication lag {lag:.1f} s above max_replication_lag_seconds {limit:g}"
            )

    def xid_age_of(self, oldest: tuple[str, int] | None) -> None:
        self._wraparound_age(
            oldest, self.xid_age, "xid_age", "transaction ID", self.options.max_xid_age
        )

    def multixact_age_of(self, oldest: tuple[str, int] | None) -> None:
        self._wraparound_age(
            oldest,
            self.multixact_age,
            "multixact_age",
            "multixact ID",
            self.options.max_multixact_age,
        )

    def _session_age(
        self,
        what: str,
        gauge: Any,
        key: str,
        seconds: float,
        pid: int | None,
        limit_key: str,
        limit: float,
    ) -> None:
        """The oldest session's ``what`` age, reported as ``key`` against ``limit_key``."""
        gauge.set(seconds)
        self.findings.details.update(
            {f"{key}_seconds": round(seconds, 3), f"{key}_pid": pid, limit_key: limit}
        )
        if seconds > limit:
            self.findings.problems.append(
                f"{what} {seconds:.1f} s (pid {pid}) above {limit_key} {limit:g}"
            )

    def _wraparound_age(
        self, oldest: tuple[str, int] | None, gauge: Any, key: str, what: str, limit: int
    ) -> None:
        """The oldest database's ``what`` age, reported as ``key`` against ``max_<key>``."""
        if oldest is None:
            gauge.set(math.nan)
            return
        database, age = oldest
        gauge.set(age)
        self.findings.details.update({key: age, f"{key}_database": database, f"max_{key}": limit})
        if age > limit:
            self.findings.problems.append(
                f"{what} age {age} of database {database} above max_{key} {limit}"
            )

    def counters(self, counters: queries.DatabaseCounters | None) -> None:
        """Deadlocks and conflicts: the server's counts, and how many are new since the
        previous run of this process (None on its first)."""
        if counters is None:
            self.deadlocks.set(math.nan)
            self.conflicts.set(math.nan)
            return
        opts, details = self.options, self.findings.details
        self.deadlocks.set(counters.deadlocks)
        self.conflicts.set(counters.conflicts)
        new_deadlocks = self._new_since_previous_run("deadlocks", counters.deadlocks)
        new_conflicts = self._new_since_previous_run("conflicts", counters.conflicts)
        details.update(
            deadlocks=counters.deadlocks,
            new_deadlocks=new_deadlocks,
            max_new_deadlocks=opts.max_new_deadlocks,
            conflicts=counters.conflicts,
            conflicts_by_reason=counters.conflicts_by_reason,
            new_conflicts=new_conflicts,
            max_new_conflicts=opts.max_new_conflicts,
        )
        if new_deadlocks is not None and new_deadlocks > opts.max_new_deadlocks:
            self.findings.problems.append(
                f"{new_deadlocks} deadlocks in database {counters.database} since the previous "
                f"run, above max_new_deadlocks {opts.max_new_deadlocks}"
            )
        if new_conflicts is not None and new_conflicts > opts.max_new_conflicts:
            reasons = ", ".join(
                f"{reason} {count}"
                for reason, count in counters.conflicts_by_reason.items()
                if count
            )
            self.findings.problems.append(
                f"{new_conflicts} queries cancelled by recovery conflicts in database "
                f"{counters.database} since the previous run (since the statistics reset: "
                f"{reasons}), above max_new_conflicts {opts.max_new_conflicts}"
            )

    def _new_since_previous_run(self, name: str, count: int) -> int | None:
        previous = self.memory.get(name)
        self.memory[name] = count
        if previous is None:
            return None
        # A count below the previous one: the statistics were reset in between.
        return count - previous if count >= previous else count

    def size(self, size: int | None) -> None:
        if size is None:
            self.database_size.set(math.nan)
            return
        limit = self.options.max_database_size_bytes
        self.database_size.set(size)
        self.findings.details.update(database_size_bytes=size, max_database_size_bytes=limit)
        if limit and size > limit:
            self.findings.problems.append(
                f"database size {size} bytes above max_database_size_bytes {limit}"
            )

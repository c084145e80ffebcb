"""What one run of ``pg-health`` found: details, crossed thresholds and unreadable figures."""

from __future__ import annotations

from typing import Any

# Every figure that can be unreadable on its own, as named in details.unavailable and in
# awops_pg_figure_available{figure}.
FIGURES = (
    "connections",
    "longest_transaction",
    "idle_in_transaction",
    "lock_waiting_sessions",
    "replication_lag",
    "xid_age",
    "multixact_age",
    "database_size",
    "deadlocks_and_conflicts",
    "blocking_chain",
    "wal_archiving",
    "replication_slots",
    "tables",
    "ttl_backlog",
)


class Findings:
    """Details, crossed thresholds and unreadable figures of one run."""

    def __init__(self) -> None:
        self.details: dict[str, Any] = {}
        self.problems: list[str] = []
        self.unavailable: dict[str, str] = {}

    def mark_unavailable(self, figure: str, reason: str) -> None:
        """Name ``figure`` as unreadable; the first reason given for it stands."""
        self.unavailable.setdefault(figure, reason)

    def summary(self) -> str:
        parts = list(self.problems)
        if self.unavailable:
            parts.append(
                "unavailable: "
                + ", ".join(f"{name} ({why})" for name, why in self.unavailable.items())
            )
        return "; ".join(parts)

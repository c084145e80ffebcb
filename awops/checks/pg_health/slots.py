"""Replication slots: inactive ones, the WAL each retains, and WAL already lost to them.

A slot keeps every WAL file its consumer has not confirmed, however long the consumer is gone:
a forgotten slot fills the disk. Retained WAL is measured against ``max_slot_wal_keep_size``
when it is set (past it the server invalidates the slot) and ``max_wal_size`` otherwise (what
the server would keep without the slot). ``wal_status`` (PostgreSQL 13+) ``unreserved`` means
the slot's WAL is due for removal at the next checkpoint, ``lost`` that it is gone and the
consumer must be rebuilt.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, NamedTuple

from awops.checks.pg_health.queries import one_row
from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.checks.pg_health.queries import Connection
    from awops.metrics import GaugeSeries, MetricsBase

WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")
BAD_WAL_STATUSES = ("unreserved", "lost")


class Slot(NamedTuple):
    name: str
    slot_type: str  # physical or logical
    active: bool
    wal_status: str | None  # None: the slot never reserved WAL
    retained_bytes: int | None  # None: the slot holds no WAL (never reserved, or lost)


class Slots(NamedTuple):
    limit_setting: str  # max_slot_wal_keep_size, or max_wal_size when that is unlimited (-1)
    limit_bytes: int
    slots: list[Slot]


# On a replica the newest WAL is the last received (or, not streaming, replayed) position.
_SLOTS = """
SELECT slot_name, slot_type, active, wal_status,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery()
                            THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                            ELSE pg_current_wal_lsn() END,
                       restart_lsn)::int8
FROM pg_replication_slots
ORDER BY slot_name
"""
_LIMITS = """
SELECT pg_size_bytes(current_setting('max_slot_wal_keep_size')),
       pg_size_bytes(current_setting('max_wal_size'))
"""


def read_slots(conn: Connection) -> Slots:
    keep_size, max_wal_size = one_row(conn, _LIMITS)
    slots = [
        Slot(
            name,
            slot_type,
            bool(active),
            wal_status,
            None if retained is None else max(int(retained), 0),
        )
        for name, slot_type, active, wal_status, retained in conn.execute(_SLOTS)
    ]
    if keep_size >= 0:
        return Slots("max_slot_wal_keep_size", int(keep_size), slots)
    return Slots("max_wal_size", int(max_wal_size), slots)


class SlotFigures:
    """Records the replication slots against their thresholds; one per run."""

    def __init__(self, metrics: MetricsBase, options: PgHealthOptions, findings: Findings) -> None:
        self.options, self.findings = options, findings
        self.active = metrics.series(catalogue.PG_SLOT_ACTIVE)
        self.retained = metrics.series(catalogue.PG_SLOT_RETAINED)
        self.wal_status = metrics.series(catalogue.PG_SLOT_WAL_STATUS)
        self.limit = metrics.series(catalogue.PG_SLOT_WAL_LIMIT)

    def record(self, found: Slots | None) -> None:
        if found is None:
            return
        opts, names = self.options, {slot.name for slot in found.slots}
        _forget_dropped(self.active, ("slot",), names)
        _forget_dropped(self.retained, ("slot",), names)
        _forget_dropped(self.wal_status, ("slot", "status"), names)
        self.limit.set(found.limit_bytes)
        allowed_bytes = opts.max_slot_retained_wal_ratio * found.limit_bytes
        report: dict[str, Any] = {}
        inactive: list[str] = []
        retaining: list[str] = []
        losing: list[str] = []
        for slot in found.slots:
            retained = slot.retained_bytes or 0
            self.active.labels(slot=slot.name).set(1 if slot.active else 0)
            self.retained.labels(slot=slot.name).set(retained)
            for status in WAL_STATUSES:
                self.wal_status.labels(slot=slot.name, status=status).set(
                    1 if slot.wal_status == status else 0
                )
            report[slot.name] = {
                "type": slot.slot_type,
                "active": slot.active,
                "wal_status": slot.wal_status,
                "retained_bytes": slot.retained_bytes,
                "retained_ratio": round(retained / max(found.limit_bytes, 1), 4),
            }
            if not slot.active:
                inactive.append(f"{slot.name} ({slot.slot_type}, retaining {retained} bytes)")
            if retained > allowed_bytes:
                retaining.append(f"{slot.name} {retained} bytes")
            if slot.wal_status in BAD_WAL_STATUSES:
                losing.append(f"{slot.name} {slot.wal_status}")
        self.findings.details["replication_slots"] = {
            "slots": report,
            "inactive_slots": len(inactive),
            "max_inactive_slots": opts.max_inactive_slots,
            "wal_limit_setting": found.limit_setting,
            "wal_limit_bytes": found.limit_bytes,
            "max_slot_retained_wal_ratio": opts.max_slot_retained_wal_ratio,
        }
        problems = self.findings.problems
        if len(inactive) > opts.max_inactive_slots:
            problems.append(
                f"{len(inactive)} inactive replication slots, above max_inactive_slots "
                f"{opts.max_inactive_slots}: " + ", ".join(inactive)
            )
        if retaining:
            problems.append(
                f"replication slots retaining WAL above max_slot_retained_wal_ratio "
                f"{opts.max_slot_retained_wal_ratio:g} of {found.limit_setting} "
                f"({found.limit_bytes} bytes): " + ", ".join(retaining)
            )
        if losing:
            problems.append(
                "replication slots whose WAL is being removed (unreserved) or gone (lost): "
                + ", ".join(losing)
            )


def _forget_dropped(
    gauge: GaugeSeries, label_names: tuple[str, ...], slots: Collection[str]
) -> None:
    """Remove the series of slots no longer on the server, so a dropped slot's last figures
    do not stay behind (and keep alerting)."""
    collect = getattr(gauge, "collect", None)
    if collect is None:  # NullMetrics
        return
    stale = {
        tuple(sample.labels[name] for name in label_names)
        for family in collect()
        for sample in family.samples
        if sample.labels["slot"] not in slots
    }
    for values in stale:
        gauge.remove(*values)

"""pg-health's WAL signals, provoked for real: archiving that fails, slots that retain or lose WAL.

Settings such as archive_mode and max_slot_wal_keep_size take private clusters; a slot on the
shared one is dropped before the test ends.
"""

from __future__ import annotations

import math
import secrets
import tempfile
from pathlib import Path

from tests.fix_awops import wait_for
from tests.fix_pg import PgDatabase
from tests.fix_pg_health import (
    JOB,
    actingweb_database,
    create_monitor_role,
    options,
    scalar,
    switch_wal,
)

# -- WAL archiving --------------------------------------------------------------------------


def test_failing_wal_archiving_then_recovered(pg_cluster_factory, in_process):
    # Archiving fails until the flag file exists (settings given on the command line cannot be
    # changed by ALTER SYSTEM, so the command itself is switched).
    flag = Path(tempfile.gettempdir()) / f"awops-archive-ok-{secrets.token_hex(6)}"
    cluster = pg_cluster_factory(
        extra_settings={"archive_mode": "on", "archive_command": f"'test -f {flag}'"}
    )
    db = actingweb_database(cluster)
    switch_wal(db, 1)
    wait_for(
        lambda: scalar(db, "SELECT failed_count FROM pg_stat_archiver") >= 2,
        what="the archiver to fail twice",
    )
    # pg_monitor is enough to list the WAL files waiting (pg_ls_archive_statusdir).
    monitor = create_monitor_role(
        db, "GRANT pg_monitor TO {role}", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
    )
    env = db.awops_env(**monitor)
    runner = in_process(env | options(max_archive_failing_seconds=0, max_archive_age_seconds=0))

    failing = runner.run(JOB)

    assert failing.status == "problem"
    assert "WAL archiving failing: latest attempt on 0000000100000000000000" in failing.summary
    assert "last success never" in failing.summary
    assert "above max_archive_failing_seconds 0" in failing.summary
    assert "WAL archiving stale: last WAL archived never" in failing.summary
    assert "above max_archive_age_seconds 0" in failing.summary
    archiving = failing.details["wal_archiving"]
    assert archiving["archiving"] is True and archiving["failing"] is True
    assert archiving["failed_count"] >= 2
    assert archiving["last_archived_wal"] is None
    assert archiving["pending_segments"] >= 1
    assert failing.details["unavailable"] == {}
    assert runner.value("awops_pg_archiver_enabled") == 1
    assert runner.value("awops_pg_archiver_failing") == 1
    assert runner.value("awops_pg_archiver_failures") >= 2
    assert runner.value("awops_pg_archiver_pending_segments") >= 1
    assert runner.value("awops_pg_archiver_last_archived_age_seconds") == math.inf

    flag.touch()
    try:
        switch_wal(db, 1)  # a new segment wakes the archiver from its wait after failures
        wait_for(lambda: _archived_everything(db), what="the archiver to catch up")
        healthy = in_process(env)

        recovered = healthy.run(JOB)

    finally:
        flag.unlink(missing_ok=True)
    assert recovered.status == "ok", recovered.summary
    archiving = recovered.details["wal_archiving"]
    assert archiving["failing"] is False
    assert archiving["pending_segments"] == 0
    assert archiving["last_archived_wal"] is not None
    assert archiving["max_archive_failing_seconds"] == 300
    assert archiving["max_archive_age_seconds"] == 3600
    assert healthy.value("awops_pg_archiver_failing") == 0
    assert 0 <= healthy.value("awops_pg_archiver_last_archived_age_seconds") < 600


def _archived_everything(db: PgDatabase) -> bool:
    waiting = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
    return scalar(db, "SELECT archived_count FROM pg_stat_archiver") >= 1 and not scalar(
        db, waiting
    )


def test_archiving_figure_without_pg_monitor_is_unavailable(pg_cluster_factory, in_process):
    cluster = pg_cluster_factory(extra_settings={"archive_mode": "on", "archive_command": "true"})
    db = actingweb_database(cluster)
    runner = in_process(db.awops_env(**create_monitor_role(db)))

    result = runner.run(JOB)

    assert result.status == "problem"
    assert "wal_archiving (permission denied for function pg_ls_archive_statusdir)" in (
        result.summary
    )
    assert runner.value("awops_pg_figure_available", figure="wal_archiving") == 0
    assert math.isnan(runner.value("awops_pg_archiver_failing"))


# -- replication slots -----------------------------------------------------------------------


def test_forgotten_slot_is_inactive_and_retains_wal(aw_db: PgDatabase, in_process):
    db = aw_db
    slot = "awops_forgotten"
    with db.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    try:
        switch_wal(db, 2)
        runner = in_process(db.awops_env(**options(max_slot_retained_wal_ratio=0.001)))

        result = runner.run(JOB)

    finally:
        with db.connect(autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    assert result.status == "problem"
    slots = result.details["replication_slots"]
    retained = slots["slots"][slot]["retained_bytes"]
    assert retained >= 16 * 1024**2  # two segments switched
    assert slots["slots"][slot]["type"] == "physical"
    assert slots["slots"][slot]["active"] is False
    assert slots["slots"][slot]["wal_status"] == "reserved"
    assert slots["wal_limit_setting"] == "max_wal_size"
    assert f"1 inactive replication slots, above max_inactive_slots 0: {slot} (physical" in (
        result.summary
    )
    assert (
        "replication slots retaining WAL above max_slot_retained_wal_ratio 0.001 of max_wal_size "
        f"(1073741824 bytes): {slot} " in result.summary
    )
    assert runner.value("awops_pg_replication_slot_active", slot=slot) == 0
    assert runner.value("awops_pg_replication_slot_retained_bytes", slot=slot) == retained
    assert runner.value("awops_pg_replication_slot_wal_status", slot=slot, status="reserved") == 1
    assert runner.value("awops_pg_replication_slot_wal_status", slot=slot, status="lost") == 0

    # Dropped, the slot's series go: a removed slot must not keep alerting.
    after = runner.run(JOB)

    assert "replication slot" not in after.summary
    assert after.details["replication_slots"]["slots"] == {}
    assert runner.value("awops_pg_replication_slot_active", slot=slot) is None
    assert runner.value("awops_pg_replication_slot_retained_bytes", slot=slot) is None
    assert (
        runner.value("awops_pg_replication_slot_wal_status", slot=slot, status="reserved") is None
    )


def test_slot_past_max_slot_wal_keep_size_is_lost(pg_cluster_factory, in_process):
    cluster = pg_cluster_factory(
        extra_settings={
            "max_slot_wal_keep_size": "1MB",
            "max_wal_size": "32MB",
            "min_wal_size": "32MB",
        }
    )
    db = actingweb_database(cluster)
    with db.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot('awops_lagging', true)")
    switch_wal(db, 3)
    with db.connect(autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    wait_for(
        lambda: scalar(db, "SELECT wal_status FROM pg_replication_slots") == "lost",
        what="the slot to be invalidated",
    )
    runner = in_process(db.awops_env())

    result = runner.run(JOB)

    assert result.status == "problem"
    assert (
        "replication slots whose WAL is being removed (unreserved) or gone (lost): "
        "awops_lagging lost" in result.summary
    )
    slots = result.details["replication_slots"]
    assert slots["wal_limit_setting"] == "max_slot_wal_keep_size"
    assert slots["wal_limit_bytes"] == 1024**2
    assert slots["slots"]["awops_lagging"]["retained_bytes"] is None
    assert runner.value("awops_pg_replication_slot_wal_limit_bytes") == 1024**2
    assert (
        runner.value("awops_pg_replication_slot_wal_status", slot="awops_lagging", status="lost")
        == 1
    )
    assert runner.value("awops_pg_replication_slot_retained_bytes", slot="awops_lagging") == 0

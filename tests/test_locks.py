"""The job lock: PostgreSQL advisory locks plus slot records, DynamoDB leases, the runner's use."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from awops.abc import Job
from awops.config import LockSettings, load_config
from awops.context import Resources
from awops.locks import Lease, LockBackend, Locks
from awops.locks.postgresql import advisory_key
from awops.metrics import Metrics
from awops.registry import JobRegistry
from awops.result import Outcome, Status
from awops.runner import JobRunner
from awops.schedule import parse_schedule, schedule_slot
from tests.fix_awops import clean_environ
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase


def test_advisory_key_is_a_stable_signed_64_bit_key_per_database_and_job():
    key = advisory_key("actingweb", "pg-ttl-purge")
    assert key == advisory_key("actingweb", "pg-ttl-purge")
    assert -(2**63) <= key < 2**63
    assert key != advisory_key("other", "pg-ttl-purge")
    assert key != advisory_key("actingweb", "pg-backup")
    # The parts are separated, so ("ab", "c") and ("a", "bc") differ.
    assert advisory_key("ab", "c") != advisory_key("a", "bc")


def test_slots_are_epoch_aligned_intervals_and_the_latest_cron_fire_time():
    every_2s = parse_schedule("every 2s")
    assert schedule_slot(every_2s, 1001.9) == 1000.0
    assert schedule_slot(every_2s, 1002.0) == 1002.0
    ten_minutes = parse_schedule("every 10m")
    assert schedule_slot(ten_minutes, 1_800_000_123.0) == 1_800_000_000.0 - 1_800_000_000 % 600

    def at(text: str) -> float:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()

    daily = parse_schedule("0 3 * * *")
    assert schedule_slot(daily, at("2026-12-01T10:00:00")) == at("2026-12-01T03:00:00")
    assert schedule_slot(daily, at("2026-12-01T02:59:59")) == at("2026-11-30T03:00:00")
    # Jitter pushes a cron run some seconds past its fire time: still the same slot.
    assert schedule_slot(daily, at("2026-12-01T03:00:29")) == at("2026-12-01T03:00:00")
    weekly = parse_schedule("30 4 * * sun")
    assert schedule_slot(weekly, at("2026-12-02T00:00:00")) == at("2026-11-29T04:30:00")


def _locks(env: dict[str, str], owner: str, **settings: Any) -> tuple[Locks, Resources]:
    config = load_config(None, JobRegistry(), clean_environ(env))
    resources = Resources(config)
    lock_settings = LockSettings(**{"lease_seconds": 3.0, **settings})
    locks = Locks(
        lock_settings, lambda: resources.pg, lambda: resources.aws, config.dynamodb.prefix, owner
    )
    return locks, resources


@pytest.fixture
def two_pg_replicas(aw_db: PgDatabase) -> Iterator[tuple[Locks, Locks]]:
    a, res_a = _locks(aw_db.awops_env(), "replica-a")
    b, res_b = _locks(aw_db.awops_env(), "replica-b")
    yield a, b
    res_a.close()
    res_b.close()


def _lock_row(db: PgDatabase, job: str) -> tuple[Any, ...] | None:
    with db.connect() as conn:
        return conn.execute(
            "SELECT last_slot, done, runs, holder FROM awops_locks WHERE job = %s", [job]
        ).fetchone()


def test_pg_lock_excludes_a_second_replica_and_a_slot_runs_once(
    two_pg_replicas: tuple[Locks, Locks], aw_db: PgDatabase
):
    a, b = two_pg_replicas
    first = a.claim("pg-ttl-purge", "postgresql", 1000.0)
    assert first is not None and first.lease is not None
    held = b.claim("pg-ttl-purge", "postgresql", 1000.0)
    assert held is not None and not held.acquired
    assert "advisory lock" in held.reason
    # Another job is not blocked by it.
    other = b.claim("pg-backup", "postgresql", 1000.0)
    assert other is not None and other.lease is not None
    other.lease.release()

    first.lease.release()
    assert _lock_row(aw_db, "pg-ttl-purge") == (1000.0, True, 1, "replica-a")
    # Free now, but the slot was run: a replica firing late for it skips.
    late = b.claim("pg-ttl-purge", "postgresql", 1000.0)
    assert late is not None and not late.acquired
    assert late.reason == "already run for this slot by replica-a"
    following = b.claim("pg-ttl-purge", "postgresql", 1002.0)
    assert following is not None and following.lease is not None
    following.lease.release()
    assert _lock_row(aw_db, "pg-ttl-purge") == (1002.0, True, 2, "replica-b")
    # Without a slot (run-once) the lock is taken but no slot is recorded.
    manual = a.claim("pg-ttl-purge", "postgresql", None)
    assert manual is not None and manual.lease is not None
    manual.lease.release()
    assert _lock_row(aw_db, "pg-ttl-purge") == (1002.0, True, 2, "replica-b")


def test_pg_lock_of_a_dead_session_moves_and_its_unfinished_slot_is_run_again(
    two_pg_replicas: tuple[Locks, Locks], aw_db: PgDatabase
):
    a, b = two_pg_replicas
    claim = a.claim("pg-ttl-purge", "postgresql", 2000.0)
    assert claim is not None and claim.lease is not None
    lost = threading.Event()
    claim.lease.on_lost(lost.set)
    # The holder's session dies, as it does when its process is killed.
    with aw_db.connect(autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'awops-lock'"
        )
    taken = b.claim("pg-ttl-purge", "postgresql", 2000.0)
    assert taken is not None and taken.lease is not None
    assert taken.took_over
    assert lost.wait(10), "the old holder noticed it lost its lock"
    taken.lease.release()
    claim.lease.release()  # the dead holder's release changes nothing
    assert _lock_row(aw_db, "pg-ttl-purge") == (2000.0, True, 2, "replica-b")


def test_pg_lock_with_the_server_unreachable_is_an_error_not_a_skip():
    env = {"DATABASE_BACKEND": "postgresql", "PG_DB_HOST": "127.0.0.1", "PG_DB_PORT": "1"}
    locks, resources = _locks(env, "replica-a")
    try:
        with pytest.raises(Exception, match=r"unreachable: .* \(taking the job lock\)"):
            locks.claim("pg-ttl-purge", "postgresql", 1.0)
    finally:
        resources.close()


def _dynamodb_replicas(moto: MotoServer) -> tuple[Locks, Locks, list[Resources]]:
    env = {**moto.aws_env(), "DATABASE_BACKEND": "dynamodb"}
    a, res_a = _locks(env, "replica-a")
    b, res_b = _locks(env, "replica-b")
    return a, b, [res_a, res_b]


def _lease_item(moto: MotoServer, job: str) -> dict[str, Any]:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=moto.url, region_name="us-west-1")
    item = client.get_item(
        TableName="demo_actingweb_awops_locks", Key={"lock_key": {"S": job}}, ConsistentRead=True
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def test_dynamodb_lease_excludes_heartbeats_and_records_the_slot(moto: MotoServer):
    a, b, _ = _dynamodb_replicas(moto)
    claim = a.claim("dynamodb-backup", "dynamodb", 3000.0)
    assert claim is not None and claim.lease is not None
    version = _lease_item(moto, "dynamodb-backup")["version"]
    # b watches until it sees a's version change (a heartbeat), then skips.
    held = b.claim("dynamodb-backup", "dynamodb", 3000.0)
    assert held is not None and not held.acquired
    assert "held by replica-a" in held.reason
    assert _lease_item(moto, "dynamodb-backup")["version"] != version
    claim.lease.release()
    item = _lease_item(moto, "dynamodb-backup")
    assert (item["held"], item["done"], item["holder"], item["runs"]) == (
        False,
        True,
        "replica-a",
        "1",
    )
    late = b.claim("dynamodb-backup", "dynamodb", 3000.0)
    assert late is not None and late.reason == "already run for this slot by replica-a"
    following = b.claim("dynamodb-backup", "dynamodb", 3060.0)
    assert following is not None and following.lease is not None
    following.lease.release()
    assert _lease_item(moto, "dynamodb-backup")["runs"] == "2"


def test_dynamodb_lease_of_a_dead_holder_is_taken_over_after_one_lease_period(moto: MotoServer):
    a, b, _ = _dynamodb_replicas(moto)
    claim = a.claim("dynamodb-backup", "dynamodb", 4000.0)
    assert claim is not None and claim.lease is not None
    # The holder dies: its heartbeats stop and it never releases.
    claim.lease._released.set()
    started = time.monotonic()
    taken = b.claim("dynamodb-backup", "dynamodb", 4000.0)
    assert taken is not None and taken.lease is not None and taken.took_over
    assert time.monotonic() - started >= 3.0, "judged by a whole lease period of no heartbeat"
    assert _lease_item(moto, "dynamodb-backup")["holder"] == "replica-b"
    taken.lease.release()
    # The dead holder's late release cannot undo the new holder's record.
    claim.lease._release()
    item = _lease_item(moto, "dynamodb-backup")
    assert (item["holder"], item["done"], item["runs"]) == ("replica-b", True, "2")


def test_dynamodb_lease_race_has_exactly_one_winner(moto: MotoServer):
    """Both replicas read the same state, then both write: the conditional write lets one win.

    The interleaving is forced rather than left to threads, because moto, unlike DynamoDB,
    does not serialise concurrent conditional writes to one item.
    """
    a, b, _ = _dynamodb_replicas(moto)
    for locks in (a, b):  # create each replica's DynamoDB lock backend and the table
        warm = locks.claim("dynamodb-ttl", "dynamodb", None)
        assert warm is not None and warm.lease is not None
        warm.lease.release()
    impl_a, impl_b = a._dynamodb, b._dynamodb
    assert impl_a is not None and impl_b is not None
    client_a, client_b = impl_a.aws.dynamodb(), impl_b.aws.dynamodb()
    # Neither has seen an item yet: both try "create if absent".
    assert impl_a._get(client_a, "dynamodb-gsi") is None
    assert impl_b._get(client_b, "dynamodb-gsi") is None
    first = impl_a._take(client_a, "dynamodb-gsi", 5000.0, None, False)
    second = impl_b._take(client_b, "dynamodb-gsi", 5000.0, None, False)
    assert first is not None and second is None
    # Both now read the same version; after a's release only one of two takers wins.
    first.release()
    seen_a = impl_a._get(client_a, "dynamodb-gsi")
    seen_b = impl_b._get(client_b, "dynamodb-gsi")
    assert seen_a == seen_b and seen_a is not None
    winner = impl_b._take(client_b, "dynamodb-gsi", 6000.0, seen_b, False)
    loser = impl_a._take(client_a, "dynamodb-gsi", 6000.0, seen_a, False)
    assert winner is not None and loser is None
    assert _lease_item(moto, "dynamodb-gsi")["holder"] == "replica-b"
    winner.release()


class Counts(Job):
    name = "counts"
    backend = "postgresql"
    description = "counts its runs"
    changes_data = True
    default_schedule = "every 2s"
    runs = 0

    def _run(self) -> Outcome:
        Counts.runs += 1
        return Outcome.ok("counted")


def test_runner_skips_with_a_metric_when_the_slot_was_run_elsewhere(aw_db: PgDatabase):
    registry = JobRegistry()
    registry.register(Counts)
    config = load_config(None, registry, clean_environ(aw_db.awops_env()))
    runners = []
    for owner in ("replica-a", "replica-b"):
        prometheus = CollectorRegistry()
        resources = Resources(config)
        locks = Locks(config.lock, lambda r=resources: r.pg, lambda r=resources: r.aws, "x", owner)
        runner = JobRunner(config, registry, Metrics(prometheus), resources, locks=locks)
        runners.append((runner, prometheus, resources))
    try:
        (a, a_prom, _), (b, b_prom, _) = runners
        assert a.run("counts", slot=100.0).status is Status.OK
        skipped = b.run("counts", slot=100.0)
        assert skipped.status is Status.SKIPPED
        assert skipped.details == {"lock": "held"}
        assert b_prom.get_sample_value("awops_job_lock_skipped_total", {"job": "counts"}) == 1
        assert (
            b_prom.get_sample_value("awops_job_runs_total", {"job": "counts", "status": "skipped"})
            == 1
        )
        assert b.run("counts", slot=102.0).status is Status.OK
        # A dry run takes no lock and records no slot.
        assert a.run("counts", slot=102.0, dry_run=True).status is Status.OK
        assert Counts.runs == 3
        assert a_prom.get_sample_value("awops_job_lock_skipped_total", {"job": "counts"}) is None
    finally:
        for _, _, resources in runners:
            resources.close()


def test_runner_reports_an_unreachable_lock_backend_as_an_error():
    registry = JobRegistry()
    registry.register(Counts)
    env = {"DATABASE_BACKEND": "postgresql", "PG_DB_HOST": "127.0.0.1", "PG_DB_PORT": "1"}
    config = load_config(None, registry, clean_environ(env))
    resources = Resources(config)
    locks = Locks(config.lock, lambda: resources.pg, lambda: resources.aws, "x", "replica-a")
    runner = JobRunner(config, registry, Metrics(CollectorRegistry()), resources, locks=locks)
    before = Counts.runs
    result = runner.run("counts", slot=1.0)
    assert result.status is Status.ERROR
    assert "unreachable: Connection refused (taking the job lock)" in result.summary
    assert Counts.runs == before


def test_lock_backend_none_and_auto_choose_per_job():
    locks = Locks(LockSettings(backend="none"), _unused, _unused, "x", "me")
    assert locks.claim("pg-ttl-purge", "postgresql", 1.0) is None
    auto = Locks(LockSettings(), _unused, _unused, "x", "me")
    assert auto.backend_for("postgresql") == "postgresql"
    assert auto.backend_for("dynamodb") == "dynamodb"
    forced = Locks(LockSettings(backend="postgresql"), _unused, _unused, "x", "me")
    assert forced.backend_for("dynamodb") == "postgresql"


def _unused() -> Any:
    raise AssertionError("not reached")


def test_read_only_checks_run_unlocked_unless_scope_is_all():
    locks = Locks(LockSettings(), _unused, _unused, "x", "me")
    assert locks.claim("pg-health", "postgresql", 1.0, changes_data=False) is None
    assert Locks(LockSettings(scope="all"), _unused, _unused, "x", "me").applies_to(False)


def test_a_lock_backend_is_held_to_its_duties_by_abstract_methods():
    with pytest.raises(TypeError, match="_heartbeat"):
        Lease("pg-ttl-purge", None, 1.0)
    with pytest.raises(TypeError, match="claim"):
        LockBackend()

    class NoRelease(Lease):
        def _heartbeat(self) -> bool:
            return True

    with pytest.raises(TypeError, match="_release"):
        NoRelease("pg-ttl-purge", None, 1.0)


# Runs ``awops run-once --json <args>`` in a fresh interpreter and reports which lock modules
# (and whether boto3) it imported.
_RUN_ONCE_PROBE = (
    "import json, sys, runpy\n"
    "sys.argv = ['awops', 'run-once', '--json', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('awops', run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'boto3'"
    " or m.startswith('awops.locks'))\n"
    "print('MODULES', json.dumps(loaded))\n"
    "sys.exit(code)\n"
)


def _run_once(env: dict[str, str], *jobs: str) -> tuple[dict[str, Any], list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _RUN_ONCE_PROBE, *jobs],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.getcwd(),
    )
    assert result.returncode == 0, result.stderr
    document, modules = result.stdout.split("\nMODULES ")
    return json.loads(document), json.loads(modules)


def test_run_once_takes_the_lock_without_a_slot_and_imports_only_what_it_needs(
    aw_db: PgDatabase,
):
    env = aw_db.awops_env()
    # A read-only check takes no lock: the lock package is not even imported.
    checked, modules = _run_once(env, "pg-health")
    assert [job["job"] for job in checked["jobs"]] == ["pg-health"]
    assert modules == []
    # A job that changes data waits for nobody: held elsewhere, it is skipped.
    with aw_db.connect(autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [advisory_key(aw_db.name, "pg-ttl-purge")])
        held, modules = _run_once(env, "pg-ttl-purge")
    [job] = held["jobs"]
    assert job["status"] == "skipped", job
    assert "another replica is running it (PostgreSQL advisory lock)" in job["summary"]
    # Only the backend the job locks in is imported, never boto3 for a PostgreSQL job.
    assert modules == ["awops.locks", "awops.locks.base", "awops.locks.postgresql"]
    ran, _ = _run_once(env, "pg-ttl-purge")
    assert ran["jobs"][0]["status"] == "ok", ran
    # No slot: the run is not recorded, so it never stops a scheduled run of the same slot.
    with aw_db.connect() as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'awops_locks'")
        assert tables.fetchone() == (0,)

"""DynamoDB and S3 endpoints down and throttling (through tests/fix_faultproxy.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.faults._helpers import backups_in
from tests.fix_dynamodb import create_actingweb_tables, dynamodb_client, protect_tables
from tests.fix_faultproxy import FaultProxy
from tests.fix_moto import MotoServer
from tests.fix_pg import PgDatabase, free_port


def test_dynamodb_throttled_then_down_then_back(
    moto: MotoServer, fault_proxy: FaultProxy, in_process: Any
):
    client = dynamodb_client(moto)
    protect_tables(client, create_actingweb_tables(client), "demo_actingweb_attributes")
    env = {
        **moto.aws_env(AWS_DB_HOST=fault_proxy.url),
        "DATABASE_BACKEND": "dynamodb",
        "AWOPS_DYNAMODB_MAX_ATTEMPTS": "3",
        "AWOPS_DYNAMODB_DESCRIBE_CACHE_SECONDS": "0",
    }
    runner = in_process(env)
    baseline = {job: runner.run(job).status for job in ("dynamodb-gsi", "dynamodb-pitr")}
    assert "error" not in baseline.values()
    fault_proxy.fail_next(2)  # fewer than the retries: absorbed
    assert runner.run("dynamodb-gsi").status == baseline["dynamodb-gsi"]
    fault_proxy.fail_next(1000)  # throttled for good: an error, never healthy
    assert runner.run("dynamodb-gsi").status == "error"
    fault_proxy.fail_next(0)
    fault_proxy.down = True
    down = runner.run("dynamodb-pitr")
    assert down.status == "error"
    fault_proxy.down = False
    assert runner.run("dynamodb-pitr").status == baseline["dynamodb-pitr"]
    assert runner.run("dynamodb-gsi").status == baseline["dynamodb-gsi"]
    assert runner.value("awops_job_healthy", job="dynamodb-gsi") == (
        1 if baseline["dynamodb-gsi"] == "ok" else 0
    )


def test_s3_endpoint_down_keeps_the_backups_and_the_next_run_succeeds(
    aw_db: PgDatabase, moto: MotoServer, in_process: Any, tmp_path: Path
):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-west-1")
    s3.create_bucket(
        Bucket="awops-faults", CreateBucketConfiguration={"LocationConstraint": "us-west-1"}
    )
    local = tmp_path / "local"
    common = {
        **aw_db.awops_env(),
        **moto.aws_env(),
        "AWOPS_BACKUP_TARGETS": f"s3://awops-faults/pg,file://{local}",
        "AWOPS_DYNAMODB_MAX_ATTEMPTS": "1",
    }
    up = in_process({**common, "AWOPS_BACKUP_S3_ENDPOINT_URL": moto.url})
    assert up.run("pg-backup").status == "ok"
    stored = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="awops-faults")["Contents"])
    locally = backups_in(local)
    down = in_process({**common, "AWOPS_BACKUP_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    result = down.run("pg-backup")
    assert result.status == "error"
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="awops-faults")["Contents"]) == stored
    assert set(locally) <= set(backups_in(local))
    assert up.run("pg-backup").status == "ok"
    after = s3.list_objects_v2(Bucket="awops-faults")["Contents"]
    assert len([o for o in after if o["Key"].endswith(".manifest.json")]) == 2

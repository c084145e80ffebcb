"""Credentials in an S3 target URL (``s3://KEY:SECRET@bucket/prefix``) sign that target's
requests, and only that target's; they appear in no output.

moto runs with its IAM checks on (``INITIAL_NO_AUTH_ACTION_COUNT``): after the set-up calls
every request must carry a known access key, a signature made with that key's secret, and a
policy that allows it. So a backup that lands proves both the key and the (percent-decoded)
secret were used; the environment's own credentials are unknown to this moto.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from tests.fix_awops import run_awops
from tests.fix_moto import MotoServer, start_moto
from tests.fix_pg import PgDatabase

REGION = "us-west-1"
# Calls moto answers before it checks credentials: the set-up below makes exactly these.
SETUP_CALLS = 5
POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


@pytest.fixture
def iam_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(SETUP_CALLS))
    server = start_moto()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)


def setup_user(moto: MotoServer) -> tuple[str, str]:
    """A user allowed S3, its access key, and two buckets; ``SETUP_CALLS`` calls in all."""
    session = boto3.session.Session(
        aws_access_key_id="setup", aws_secret_access_key="setup", region_name=REGION
    )
    iam = session.client("iam", endpoint_url=moto.url)
    iam.create_user(UserName="awops-backup")
    key = iam.create_access_key(UserName="awops-backup")["AccessKey"]
    iam.put_user_policy(UserName="awops-backup", PolicyName="s3", PolicyDocument=POLICY)
    s3 = session.client("s3", endpoint_url=moto.url)
    for bucket in ("with-keys", "without-keys"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return key["AccessKeyId"], key["SecretAccessKey"]


def every_byte_encoded(text: str) -> str:
    """``text`` percent-encoded byte by byte, so only a decoded secret signs right."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


def backup_env(db: PgDatabase, moto: MotoServer, targets: str) -> dict[str, str]:
    return db.awops_env(
        **moto.aws_env(),  # the default chain: AWS_ACCESS_KEY_ID=testing, unknown to this moto
        AWOPS_BACKUP_TARGET=targets,
        AWOPS_BACKUP_S3_ENDPOINT_URL=moto.url,
        AWOPS_DYNAMODB_MAX_ATTEMPTS="1",
    )


def stored(moto: MotoServer, key_id: str, secret: str, bucket: str) -> list[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_the_urls_credentials_sign_its_target_and_only_its_target(
    aw_db: PgDatabase, iam_moto: MotoServer
) -> None:
    key_id, secret = setup_user(iam_moto)
    with_keys = f"s3://{key_id}:{every_byte_encoded(secret)}@with-keys/pg"
    env = backup_env(aw_db, iam_moto, f"{with_keys},s3://without-keys/pg")
    done = run_awops("run-once", "pg-backup", "--json", env=env, timeout=180)
    (job,) = json.loads(done.stdout)["jobs"]
    # The target with credentials in its URL got the backup ...
    assert job["details"]["targets"] == ["s3://with-keys/pg"], done.stdout + done.stderr
    keys = stored(iam_moto, key_id, secret, "with-keys")
    assert any(k.endswith(".manifest.json") for k in keys), keys
    # ... the other kept the default chain, whose key this moto does not know.
    assert done.returncode == 1
    failed = job["details"]["failed_targets"]
    assert list(failed) == ["s3://without-keys/pg"]
    assert stored(iam_moto, key_id, secret, "without-keys") == []
    for text in (done.stdout, done.stderr):
        assert secret not in text
        assert every_byte_encoded(secret) not in text


def test_a_wrong_secret_is_refused_and_named_nowhere(
    aw_db: PgDatabase, iam_moto: MotoServer
) -> None:
    key_id, secret = setup_user(iam_moto)
    wrong = "Wr0ng" + secret[5:]
    env = backup_env(aw_db, iam_moto, f"s3://{key_id}:{every_byte_encoded(wrong)}@with-keys/pg")
    done = run_awops("run-once", "pg-backup", "--json", env=env, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    (job,) = json.loads(done.stdout)["jobs"]
    assert job["status"] == "error"
    assert "s3://with-keys/pg" in job["summary"]
    assert stored(iam_moto, key_id, secret, "with-keys") == []
    for text in (done.stdout, done.stderr):
        for hidden in (wrong, every_byte_encoded(wrong), wrong[5:20]):
            assert hidden not in text


def test_the_credentials_are_masked_and_need_encoding() -> None:
    from awops.backup.target_url import TargetUrlError, parse_target_url

    where = parse_target_url("s3://AKIA:se%2Fcr%2Bet@bucket/prefix")
    assert (where.access_key_id, where.secret_access_key) == ("AKIA", "se/cr+et")
    assert where.display == "s3://bucket/prefix"
    assert "se/cr+et" not in repr(where)
    # An unencoded "/" in the secret would make part of it the bucket: refused, and masked.
    with pytest.raises(TargetUrlError) as refused:
        parse_target_url("s3://AKIA:Kn0wn/xyzzy@bucket/prefix")
    assert "%2F" in str(refused.value)
    assert "Kn0wn" not in str(refused.value) and "xyzzy" not in str(refused.value)
    with pytest.raises(TargetUrlError, match="KEY:SECRET"):
        parse_target_url("s3://AKIA@bucket/prefix")

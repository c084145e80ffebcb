from pathlib import Path

import pytest

from awops.config import load_config
from awops.config_render import render_config
from awops.errors import ConfigError
from awops.registry import builtin_registry


def load(tmp_path: Path, text: str | None, env: dict[str, str] | None = None):
    path = None
    if text is not None:
        path = tmp_path / "awops.toml"
        path.write_text(text)
    return load_config(path, builtin_registry(), env or {})


def test_defaults_follow_actingweb(tmp_path: Path) -> None:
    config = load(tmp_path, None)
    assert config.backends == {"dynamodb"}
    pg = config.postgresql
    assert (pg.host, pg.port, pg.dbname, pg.user, pg.schema) == (
        "localhost",
        5432,
        "actingweb",
        "actingweb",
        "public",
    )
    assert (pg.pool_min_size, pg.pool_max_size, pg.pool_timeout_seconds) == (2, 10, 30.0)
    assert config.dynamodb.prefix == "demo_actingweb"
    assert config.dynamodb.region == "us-west-1"


def test_actingweb_environment_is_enough(tmp_path: Path) -> None:
    env = {
        "DATABASE_BACKEND": "postgresql",
        "PG_DB_HOST": "db.internal",
        "PG_DB_PORT": "6432",
        "PG_DB_PASSWORD": "s3cr3t",
        "PG_DB_PREFIX": "w0_",
        "PG_DB_SCHEMA": "aw",
        "PG_POOL_MAX_SIZE": "4",
        "PG_POOL_TIMEOUT": "2.5",
        "AWS_DB_HOST": "http://127.0.0.1:8000",
    }
    config = load(tmp_path, None, env)
    assert config.backends == {"postgresql"}
    assert config.postgresql.port == 6432
    assert config.postgresql.search_schema == "w0_aw"
    assert config.postgresql.pool_max_size == 4
    assert config.postgresql.pool_timeout_seconds == 2.5
    assert config.dynamodb.endpoint_url == "http://127.0.0.1:8000"
    assert config.secrets() == ["s3cr3t"]


def test_environment_overrides_file_and_awops_variables(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[postgresql]\nport = 1111\n[jobs.pg-health]\nschedule = "every 5m"\n',
        {
            "PG_DB_PORT": "2222",
            "AWOPS_BACKENDS": "postgresql,dynamodb",
            "AWOPS_JOB_PG_HEALTH_ENABLED": "false",
            "AWOPS_METRICS_ADDR": "127.0.0.1:9999",
            "AWOPS_BACKUP_TARGET": "s3://bucket/prefix,file:///var/backups/awops",
            "AWOPS_DAEMON_SHUTDOWN_TIMEOUT_SECONDS": "5",
        },
    )
    assert config.postgresql.port == 2222
    assert config.backends == {"postgresql", "dynamodb"}
    assert config.jobs["pg-health"].enabled is False
    assert config.jobs["pg-health"].schedule.interval_seconds == 300
    assert config.metrics.addr == "127.0.0.1:9999"
    assert config.backup.targets == ["s3://bucket/prefix", "file:///var/backups/awops"]
    assert config.daemon.shutdown_timeout_seconds == 5


@pytest.mark.parametrize(
    ("text", "env", "origin", "expected"),
    [
        ("[postgresql]\nprot = 1\n", {}, "postgresql.prot", "one of the keys of [postgresql]"),
        ("[postgresql]\nport = 'x'\n", {}, "postgresql.port", "a whole number"),
        ("[postgresql]\nport = 70000\n", {}, "postgresql.port", "at most 65535"),
        ("[jobs.pg-health]\nschedule = '61 * * * *'\n", {}, "jobs.pg-health.schedule", "cron"),
        ("[jobs.pg-health]\nenabled = 'yes'\n", {}, "jobs.pg-health.enabled", "true or false"),
        ("[jobs.pg-nope]\n", {}, "jobs.pg-nope", "a known job name"),
        ("[jobs.pg-health]\ncolour = 1\n", {}, "jobs.pg-health.colour", "one of the keys"),
        ("[postgresql]\nschema = ''\n", {}, "postgresql.schema", "PostgreSQL identifier"),
        ("[dynamodb]\nprefix = 'a b'\n", {}, "dynamodb.prefix", "DynamoDB table name"),
        ("backends = ['mysql']\n", {}, "backends", "a list of backends"),
        ("[metrics]\naddr = 'nonsense'\n", {}, "metrics.addr", "HOST:PORT"),
        ("[backup]\ntargets = ['ftp://x']\n", {}, "backup.targets", "s3://bucket/prefix"),
        ("[logging]\nformat = 'xml'\n", {}, "logging.format", "'text'"),
        ("[nonsense]\n", {}, "nonsense", "a known top-level key"),
        ("x = = 1\n", {}, "awops.toml", "valid TOML"),
        ("", {"PG_DB_PORT": "abc"}, "environment PG_DB_PORT", "a whole number"),
        ("", {"PG_POOL_MIN_SIZE": "20"}, "environment PG_POOL_MIN_SIZE", "pool_min_size"),
        ("", {"DATABASE_BACKEND": "mongodb"}, "environment DATABASE_BACKEND", "backends"),
        ("", {"AWOPS_JOB_NOPE_ENABLED": "1"}, "environment AWOPS_JOB_NOPE_ENABLED", "AWOPS_JOB_"),
    ],
)
def test_errors_name_file_key_and_expectation(
    tmp_path: Path, text: str, env: dict[str, str], origin: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    message = str(caught.value)
    assert origin in message
    assert expected in message
    if not origin.startswith("environment"):
        assert str(tmp_path / "awops.toml") in message


def test_choices_ignore_case(tmp_path: Path) -> None:
    config = load(tmp_path, "[logging]\nformat = 'JSON'\n", {"AWOPS_LOG_LEVEL": "debug"})
    assert config.logging.level == "DEBUG"
    assert config.logging.format == "json"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", builtin_registry(), {})


def test_render_masks_secrets(tmp_path: Path) -> None:
    config = load(tmp_path, None, {"PG_DB_PASSWORD": "hunter2-secret"})
    text = render_config(config)
    assert "hunter2-secret" not in text
    assert (
        '# password = "********"  (a secret, not printed: write it here, or set PG_DB_PASSWORD)'
        in text
    )
    assert "[jobs.pg-health]" in text


def test_kubernetes_service_links_are_not_errors(tmp_path: Path) -> None:
    config = load(tmp_path, None, {"AWOPS_PORT": "tcp://10.0.0.1:9647", "AWOPS_SERVICE_HOST": "x"})
    assert config.metrics.addr == "0.0.0.0:9647"


def test_passwords_in_urls_are_secrets_as_written_and_decoded(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[backup]\ntargets = ["s3://AKIA:t%40rget@bucket/p", "/var/b"]\n'
        '[jobs.pg-backup-verify]\ntarget = "s3://AKIA:verify-pw@bucket/p"\n',
        {
            "AWOPS_BACKUP_S3_ENDPOINT_URL": "http://minio:s3-pw@127.0.0.1:9000",
            "AWOPS_PUSHGATEWAY_URL": "https://awops:push-pw@push.example:9091",
            "AWS_DB_HOST": "http://local:ddb-pw@127.0.0.1:8000",
        },
    )
    assert sorted(config.secrets()) == sorted(
        ["t%40rget", "t@rget", "verify-pw", "s3-pw", "push-pw", "ddb-pw"]
    )
    text = render_config(config)
    # Shown masked, in a comment, so a saved copy never holds the mask as a value.
    assert '# targets = ["s3://AKIA:********@bucket/p", "/var/b"]  (holds a secret' in text
    assert '# target = "s3://AKIA:********@bucket/p"  (holds a secret' in text
    assert not [secret for secret in config.secrets() if secret in text]
    # A user without a password, or an @ in a path, holds no secret.
    plain = load(tmp_path, '[backup]\ntargets = ["s3://bucket/a@b"]\n')
    assert plain.secrets() == []

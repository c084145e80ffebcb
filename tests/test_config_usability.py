"""What a newcomer trips over in the configuration: the printed mask saved as a password,
typos, and a backend nobody chose."""

from pathlib import Path

import pytest

from awops.config import load_config
from awops.config_render import render_config
from awops.config_sources import DEFAULT_BACKENDS_ORIGIN
from awops.errors import ConfigError
from awops.registry import builtin_registry

MASK = "********"


def load(tmp_path: Path, text: str | None, env: dict[str, str] | None = None):
    path = None
    if text is not None:
        path = tmp_path / "awops.toml"
        path.write_text(text)
    return load_config(path, builtin_registry(), env or {})


@pytest.mark.parametrize(
    ("text", "env", "origin"),
    [
        (f'[postgresql]\npassword = "{MASK}"\n', {}, "postgresql.password"),
        ("", {"PG_DB_PASSWORD": MASK}, "environment PG_DB_PASSWORD"),
        ("", {"AWOPS_POSTGRESQL_PASSWORD": MASK}, "environment AWOPS_POSTGRESQL_PASSWORD"),
        (f'[jobs.pg-health]\nping_url = "{MASK}"\n', {}, "jobs.pg-health.ping_url"),
        (
            "",
            {"AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_PASSWORD": MASK},
            "environment AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_PASSWORD",
        ),
        (f'[notifications]\nfailure_webhook_url = "{MASK}"\n', {}, "failure_webhook_url"),
        # The password of a URL, as `awops config` masks it.
        (f'[backup]\ntargets = ["s3://AKIA:{MASK}@bucket/p"]\n', {}, "backup.targets"),
        ("", {"AWOPS_BACKUP_TARGET": f"s3://AKIA:{MASK}@b/p"}, "environment AWOPS_BACKUP_TARGET"),
        ("", {"AWOPS_PUSHGATEWAY_URL": f"https://u:{MASK}@h:9091"}, "AWOPS_PUSHGATEWAY_URL"),
    ],
)
def test_the_mask_is_refused_as_a_secret(
    tmp_path: Path, text: str, env: dict[str, str], origin: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    message = str(caught.value)
    assert origin in message
    assert "the real secret" in message


def test_a_mask_inside_a_longer_secret_is_a_secret_like_any_other(tmp_path: Path) -> None:
    config = load(tmp_path, None, {"PG_DB_PASSWORD": f"x{MASK}y"})
    assert config.postgresql.password == f"x{MASK}y"


def test_printed_configuration_saved_as_a_file_loads_and_holds_no_mask(tmp_path: Path) -> None:
    env = {
        "DATABASE_BACKEND": "postgresql",
        "PG_DB_PASSWORD": "pg-secret",
        "AWOPS_BACKUP_TARGET": "s3://AKIA:s3-secret@bucket/p,/var/backups/awops",
        "AWOPS_JOB_PG_HEALTH_PING_URL": "https://hc.example/ping/abc",
        "AWOPS_JOB_PG_BACKUP_VERIFY_VERIFY_PASSWORD": "verify-secret",
        "AWOPS_JOB_PG_TTL_PURGE_GRACE_SECONDS": "120",
    }
    printed = render_config(load(tmp_path, None, env))
    saved = tmp_path / "saved.toml"
    saved.write_text(printed)
    # Loaded with nothing from the environment: every line that held a secret is a comment.
    again = load_config(saved, builtin_registry(), {})
    assert again.postgresql.password == ""
    assert again.jobs["pg-backup-verify"].options.verify_password == ""
    assert again.jobs["pg-health"].ping_url == ""
    assert again.backup.targets == []
    assert MASK not in again.secrets()
    # Everything else came through.
    assert again.backends == {"postgresql"}
    assert again.jobs["pg-ttl-purge"].options.grace_seconds == 120
    assert "secret" not in printed.replace("(a secret", "").replace("(holds a secret", "")
    # With the secrets back in the environment the saved file is the configuration again.
    restored = load_config(saved, builtin_registry(), env)
    assert restored.postgresql.password == "pg-secret"
    assert restored.backup.targets == ["s3://AKIA:s3-secret@bucket/p", "/var/backups/awops"]


@pytest.mark.parametrize(
    ("text", "env", "suggestion", "listed"),
    [
        ("[jobs.pg-health]\nschedul = 'every 5m'\n", {}, "'schedule'", "timeout_seconds"),
        ("[jobs.pg-health]\nmax_ping_second = 1\n", {}, "'max_ping_seconds'", "enabled"),
        ("[jobs.pg-backup]\nEnabled = false\n", {}, "'enabled'", "keep_last"),
        ("[jobs.pg-backup]\ntimeout = 60\n", {}, "'timeout_seconds'", "jitter_seconds"),
        ("[postgresql]\nprot = 1\n", {}, "'port'", "host"),
        ("[postgres]\nport = 1\n", {}, "'postgresql'", "backends"),
        ("[jobs.pg-helth]\n", {}, "'pg-health'", "pg-ttl-purge"),
        ("", {"AWOPS_JOB_PG_HELTH_ENABLED": "0"}, "AWOPS_JOB_PG_HEALTH_...", "AWOPS_JOB_"),
        ("", {"AWOPS_JOB_PG_HEALTH_SCHEDUL": "1m"}, "'schedule'", "ping_url"),
    ],
)
def test_a_misspelled_key_lists_every_key_and_suggests_the_closest(
    tmp_path: Path, text: str, env: dict[str, str], suggestion: str, listed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    message = str(caught.value)
    assert f"did you mean {suggestion}?" in message
    assert listed in message


def test_nothing_close_suggests_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[jobs.pg-health]\nzzzz = 1\n")
    assert "did you mean" not in str(caught.value)
    assert "schedule" in str(caught.value)


def test_an_unknown_awops_variable_is_warned_about_with_a_suggestion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(tmp_path, None, {"AWOPS_POSTGRESSQL_PORT": "1"})
    assert "did you mean AWOPS_POSTGRESQL_...?" in caplog.text


@pytest.mark.parametrize(
    ("text", "env", "backends", "origin"),
    [
        (None, {}, {"dynamodb"}, DEFAULT_BACKENDS_ORIGIN),
        (None, {"DATABASE_BACKEND": "postgresql"}, {"postgresql"}, "DATABASE_BACKEND=postgresql"),
        (
            'backends = ["postgresql"]\n',
            {"AWOPS_BACKENDS": "postgresql,dynamodb"},
            {"postgresql", "dynamodb"},
            "environment AWOPS_BACKENDS=postgresql,dynamodb",
        ),
        ('backends = ["postgresql"]\n', {}, {"postgresql"}, "awops.toml: backends"),
    ],
)
def test_config_says_where_the_backends_came_from(
    tmp_path: Path, text: str | None, env: dict[str, str], backends: set[str], origin: str
) -> None:
    config = load(tmp_path, text, env)
    assert config.backends == backends
    assert origin in config.backends_origin
    assert config.backends_by_default is (origin == DEFAULT_BACKENDS_ORIGIN)
    assert render_config(config).splitlines()[1].endswith(f"# {config.backends_origin}")
    assert DEFAULT_BACKENDS_ORIGIN == "DATABASE_BACKEND unset: ActingWeb's default, dynamodb"
